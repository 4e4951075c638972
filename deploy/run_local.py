"""``make run``: the whole product on one machine, with nothing but Python.

Finds PostgreSQL and Redis at the configured URLs (``NOTIFIER_DATABASE_URL``,
``NOTIFIER_REDIS_URL``) or starts embedded ones under the data dir (``.local/``); migrates; seeds
demo configuration (deploy/seed.py); starts notifier-api, notifier-worker, gateway and the
upstream stub as child processes; waits until each answers; prints the URLs, the development
token and a curl to publish an event. Ctrl-C (or SIGTERM) stops every child and the embedded
servers. If a child dies, everything is stopped and the exit code is 1.

Ports and the data dir are flags (``--help``), with environment defaults so tests can move them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from notifier_common.devservices import Services, ensure_services
from notifier_common.logging import configure_logging

from deploy.seed import seed
from deploy.supervisor import Child, ChildDied, Supervisor

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="run_local", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=env("RUN_LOCAL_DIR", str(ROOT / ".local")))
    p.add_argument("--host", default=env("RUN_LOCAL_HOST", "127.0.0.1"))
    p.add_argument("--api-port", type=int, default=int(env("NOTIFIER_API_PORT", "8000")))
    p.add_argument("--gateway-port", type=int, default=int(env("GATEWAY_API_PORT", "8001")))
    p.add_argument("--upstream-port", type=int, default=int(env("RUN_LOCAL_UPSTREAM_PORT", "8002")))
    p.add_argument(
        "--metrics-port", type=int, default=int(env("NOTIFIER_WORKER_METRICS_PORT", "9101"))
    )
    p.add_argument("--ready-timeout", type=float, default=60.0)
    return p.parse_args(argv)


def masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def script(name: str, module: str) -> list[str]:
    """The console script next to this interpreter, else ``python -m module``."""
    path = Path(sys.executable).parent / name
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def children(
    args: argparse.Namespace, services: Services, gateway_token: str | None
) -> list[Child]:
    host = args.host
    upstream = f"http://{host}:{args.upstream_port}"
    gateway_url = f"http://{host}:{args.gateway_port}"
    env = dict(os.environ) | {
        "PYTHONUNBUFFERED": "1",
        "NOTIFIER_DATABASE_URL": services.database_url,
        "NOTIFIER_REDIS_URL": services.redis_url,
        "NOTIFIER_API_HOST": host,
        "NOTIFIER_API_PORT": str(args.api_port),
        "NOTIFIER_WORKER_METRICS_PORT": str(args.metrics_port),
        "NOTIFIER_GATEWAY_URL": gateway_url,
        "NOTIFIER_CLIENTS_SERVICE_URL": upstream,
        "NOTIFIER_BILLING_SERVICE_URL": upstream,
        "GATEWAY_DATABASE_URL": services.database_url,
        "GATEWAY_REDIS_URL": services.redis_url,
        "GATEWAY_API_HOST": host,
        "GATEWAY_API_PORT": str(args.gateway_port),
    }
    if gateway_token:
        env["NOTIFIER_GATEWAY_TOKEN"] = gateway_token
    notifier = script("notifier", "notifier.cli")
    listen = ["--host", host]
    result = [
        Child(
            "notifier-api",
            [*notifier, "api", *listen, "--port", str(args.api_port)],
            env,
            ready_url=f"http://{host}:{args.api_port}/readyz",
        ),
        Child(
            "notifier-worker",
            [*notifier, "worker"],
            env,
            ready_url=f"http://{host}:{args.metrics_port}/metrics" if args.metrics_port else None,
        ),
    ]
    if importlib.util.find_spec("gateway.cli") is not None:
        result.append(
            Child(
                "gateway",
                [
                    *script("gateway", "gateway.cli"),
                    "api",
                    *listen,
                    "--port",
                    str(args.gateway_port),
                ],
                env,
                ready_url=f"{gateway_url}/readyz",
            )
        )
    if (ROOT / "deploy" / "upstream_stub.py").exists():
        stub = [sys.executable, "-m", "uvicorn", "deploy.upstream_stub:app"]
        result.append(
            Child(
                "upstream-stub",
                [*stub, *listen, "--port", str(args.upstream_port), "--log-level", "warning"],
                env,
                ready_url=f"{upstream}/healthz",
                any_status=True,
            )
        )
    return result


EXAMPLE_CLIENT = "demo-low-balance"
EXAMPLE_PAYLOAD = {"old_balance": "6000.00", "new_balance": "1500.00"}


def curl_example(host: str, port: int, token: str) -> str:
    body = {
        "id": str(uuid.uuid4()),
        "type": "client.balance_changed",
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "producer": "curl",
        # a demo client of the upstream stub whose threshold (5 000) this change crosses, so the
        # example produces a letter (LowBalanceNotice, sent at once)
        "client_id": EXAMPLE_CLIENT,
        "payload": EXAMPLE_PAYLOAD,
    }
    return (
        f"curl -sS -X POST http://{host}:{port}/v1/events \\\n"
        f"      -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
        f"      -d '{json.dumps(body)}'"
    )


def banner(
    sup: Supervisor, args: argparse.Namespace, started: list[Child], token: str, took: float
) -> None:
    names = {c.name for c in started}
    lines = [
        f"ready in {took:.1f} s",
        f"notifier API docs:  http://{args.host}:{args.api_port}/docs",
    ]
    if "gateway" in names:
        lines.append(f"gateway API docs:   http://{args.host}:{args.gateway_port}/docs")
    else:
        lines.append("gateway:            not installed yet (gateway.cli missing); not started")
    if args.metrics_port:
        lines.append(f"worker metrics:     http://{args.host}:{args.metrics_port}/metrics")
    if "upstream-stub" in names:
        lines.append(f"upstream stub:      http://{args.host}:{args.upstream_port}")
    lines += [
        f"dev token (all scopes): {token}",
        "publish an event:",
        "    " + curl_example(args.host, args.api_port, token),
        "Ctrl-C stops everything.",
    ]
    for line in lines:
        sup.say(line)


class StopRequested(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    from notifier.migrate import upgrade
    from notifier.settings import NotifierSettings

    stop = threading.Event()
    first_signal: list[float] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # A terminal's Ctrl-C can reach us twice at once (directly and forwarded by `uv run`);
        # a second one a moment later means "stop waiting for the current phase".
        if first_signal and time.monotonic() - first_signal[0] > 1.0:
            raise KeyboardInterrupt
        if not first_signal:
            first_signal.append(time.monotonic())
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def checkpoint() -> None:
        if stop.is_set():
            raise StopRequested

    t0 = time.monotonic()
    sup = Supervisor()
    settings = NotifierSettings()
    services: Services | None = None
    try:
        services = ensure_services(
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            data_dir=args.data_dir,
        )
        took = f"({time.monotonic() - t0:.1f} s)"
        sup.say(f"PostgreSQL: {services.postgres_source:<10} {masked(services.database_url)}")
        sup.say(f"Redis:      {services.redis_source:<10} {masked(services.redis_url)} {took}")
        checkpoint()
        upgrade(services.database_url)
        sup.say(f"migrated to head ({time.monotonic() - t0:.1f} s)")
        checkpoint()
        seeded = asyncio.run(seed(services.database_url, state_dir=args.data_dir))
        for note in seeded.notes:
            sup.say(note)
        checkpoint()
        started = children(args, services, seeded.tokens.get("gateway"))
        for child in started:
            sup.start(child)
        sup.wait_ready(timeout=args.ready_timeout, stop=stop)
        checkpoint()
        banner(sup, args, started, seeded.tokens["notifier"], time.monotonic() - t0)
        sup.watch(stop)
        sup.say("stopping")
        return 0
    except (StopRequested, KeyboardInterrupt):
        sup.say("stopping")
        return 0
    except ChildDied as exc:
        sup.say(f"{exc.name} exited with code {exc.code}; stopping everything")
        return 1
    except TimeoutError as exc:
        sup.say(f"{exc}; stopping everything")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        t_stop = time.monotonic()
        sup.stop_all()
        if services is not None:
            services.close()
        sup.say(f"stopped ({time.monotonic() - t_stop:.1f} s)")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(level="WARNING")  # our own lines are printed; children log as configured
    sys.exit(run(args))


if __name__ == "__main__":
    main()
