"""The local upstream stub (deploy/upstream_stub.py) the notifier enriches from, if it exists."""

from __future__ import annotations

from bench.env import BenchEnv, has_module
from bench.procs import Proc, free_port, script, wait_port


def start(env: BenchEnv) -> Proc | None:
    """Start the stub under uvicorn and point NOTIFIER_*_SERVICE_URL at it; None if absent."""
    if not has_module("deploy.upstream_stub"):
        env.ports.pop("upstream", None)
        return None
    shared = env.reuse("upstream")
    if shared is not None:
        return shared
    port = free_port()
    proc = env.sup.start(
        "upstream-stub",
        [
            script("uvicorn"),
            "deploy.upstream_stub:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={},
        sample=False,
    )
    wait_port(port, proc)
    env.ports["upstream"] = port
    return env.share("upstream", proc, {"upstream": port})
