"""The gateway's CPU per call (decision 0107): sequential ``POST /v1/messages:batch`` calls of
``--messages`` letters each, from the notifier's ``GatewayClient``, into the real gateway with
the ``log`` provider, in a bench database.

    uv run python -m bench.gateway_calls [--messages 1,9,500] [--calls 300] [--rounds 6]
                                         [--against /path/to/another/checkout]

Reports the gateway process's CPU (user + system) per call and per message, median of
``--rounds`` with min and max. With ``--against``, a second gateway is started from that
checkout's ``.venv/bin/gateway`` on the same database, and the rounds alternate between the two
(this checkout first in even rounds): both are measured in the same minutes, which on this
shared machine matters more than anything else. One call at a time, so the fixed cost of a
call shows: a single-letter call is what the immediate sends of the ``latency`` workload pay
about nine letters at a time, a 500-letter call what the drain pays.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import uuid
from pathlib import Path

from notifier.gateway_client import GatewayClient, encode_message
from notifier_common.http import create_http_client

from bench.env import BenchEnv, bench_env
from bench.procs import Proc, cpu_seconds, free_port, wait_http

_HTML = "<p>Hello, this is a letter from your provider about your account.</p>" * 12
_TEXT = "Hello, this is a letter from your provider about your account.\n" * 12


async def _send(url: str, token: str, calls: int, messages: int, tag: str) -> None:
    async with create_http_client(timeout=60) as http:
        gateway = GatewayClient(http, base_url=url, token=token, batch_size=500)
        for c in range(calls):
            keys = [f"{tag}-{c}-{i}" for i in range(messages)]
            items = [
                (
                    key,
                    encode_message(
                        key,
                        channel="email",
                        address=f"{key}@example.com",
                        name=None,
                        subject="Your account",
                        html=_HTML,
                        text=_TEXT,
                        unsubscribe_url="https://example.com/u",
                        metadata={"letter": "ActivateClientNotice"},
                    ),
                )
                for key in keys
            ]
            answers = await gateway.send_encoded(items)
            refused = [a for a in answers.values() if a.outcome != "accepted"]
            if refused:
                raise RuntimeError(f"the gateway did not accept a message: {refused[0]}")


def _start(env: BenchEnv, checkout: Path, role: str) -> tuple[Proc, str]:
    port = free_port()
    proc = env.sup.start(
        role,
        [str(checkout / ".venv" / "bin" / "gateway"), "api", "--port", str(port)],
        env=env.gateway_env(
            GATEWAY_API_PORT=str(port),
            GATEWAY_PROVIDERS='{"log": {"kind": "log"}}',
            GATEWAY_DEFAULT_PROVIDER="log",
        ),
        sample=False,
        cwd=checkout,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", default="1,9,500", help="letters per call, comma-separated")
    parser.add_argument("--calls", type=int, default=300, help="calls per round (fewer for big)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parents[1]
    checkouts = [here] + ([args.against.resolve()] if args.against else [])
    from gateway.tokens import create_token

    with bench_env(log_level="INFO") as env:
        token = asyncio.run(create_token(env.database_url, name="bench", scopes=["messages:write"]))
        gateways = [_start(env, c, f"gateway-{i}") for i, c in enumerate(checkouts)]
        for _, url in gateways:  # connections, prepared statements, first-call imports
            asyncio.run(_send(url, token, 20, 1, f"warm-{uuid.uuid4().hex[:8]}"))
        for messages in (int(m) for m in args.messages.split(",")):
            calls = max(4, min(args.calls, args.calls * 9 // max(1, messages)))
            per_call: list[list[float]] = [[] for _ in checkouts]
            for r in range(args.rounds):
                order = list(range(len(checkouts)))
                if r % 2:
                    order.reverse()
                for i in order:
                    proc, url = gateways[i]
                    before = cpu_seconds(proc.pid)
                    asyncio.run(_send(url, token, calls, messages, f"r{r}-{uuid.uuid4().hex[:8]}"))
                    per_call[i].append((cpu_seconds(proc.pid) - before) / calls * 1e6)
            print(f"{messages} letter(s) per call, {calls} calls per round, {args.rounds} rounds:")
            for checkout, runs in zip(checkouts, per_call, strict=True):
                median, low, high = statistics.median(runs), min(runs), max(runs)
                print(
                    f"  {checkout}: {median:8.0f} µs CPU per call ({low:.0f}..{high:.0f}),"
                    f" {median / messages:6.0f} per letter"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
