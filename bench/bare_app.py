"""The intake baseline: a bare FastAPI route answering 202, run by uvicorn exactly like
``notifier api`` runs the real app (factory, 1 process, log_config=None, proxy_headers)."""

from __future__ import annotations

import argparse

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/events", status_code=202)
    async def accept(request: Request) -> JSONResponse:
        await request.body()  # read the batch like the real route does
        return JSONResponse({"accepted": 0}, status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        "bench.bare_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_config=None,
        proxy_headers=True,
    )
