"""The real delivery gateway (``gateway api``) with a chosen provider, and its token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench.env import BenchEnv, has_module
from bench.procs import Proc, free_port, script, wait_http

SCOPES = ("messages:write", "messages:read")


def available() -> bool:
    return has_module("gateway.cli") and has_module("gateway.app")


def start(
    env: BenchEnv,
    *,
    providers: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Proc:
    """Start ``gateway api`` (1 uvicorn process) and point NOTIFIER_GATEWAY_* at it."""
    if "gateway_token" not in env.ports_meta:
        from gateway.tokens import create_token

        env.ports_meta["gateway_token"] = asyncio.run(
            create_token(env.database_url, name="notifier", scopes=SCOPES)
        )
    # the log-provider gateway serves every workload but drain_smtp: started once
    key = f"gateway:{json.dumps(providers, sort_keys=True)}" if not extra_env else None
    if key is not None and (shared := env.reuse(key)) is not None:
        return shared
    port = free_port()
    settings = {"GATEWAY_API_PORT": str(port)}
    if providers is not None:
        settings["GATEWAY_PROVIDERS"] = json.dumps(providers)
        settings["GATEWAY_DEFAULT_PROVIDER"] = next(iter(providers))
    proc = env.sup.start(
        "gateway",
        [script("gateway"), "api", "--port", str(port)],
        env=env.gateway_env(**settings, **(extra_env or {})),
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    env.ports["gateway"] = port
    if key is not None and providers == {"log": {"kind": "log"}}:
        env.share(key, proc, {"gateway": port})
    return proc


def stop(env: BenchEnv, proc: Proc) -> None:
    env.release(proc)
    env.ports.pop("gateway", None)
