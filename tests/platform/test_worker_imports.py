"""The worker process does not load the web stack: FastAPI/Starlette cost ~7 MB of RSS in every
worker (issue 7's memory target is 120 MB per process). Models import ``notifier_common.tokens``,
errors import FastAPI only where a response is built."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_worker_loads_no_fastapi() -> None:
    code = (
        "import sys, notifier.worker, notifier.models\n"
        "print(sorted(m for m in ('fastapi', 'starlette', 'rich') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_auth_still_exports_the_token_names() -> None:
    from notifier_common import auth, tokens

    assert auth.TokenMixin is tokens.TokenMixin
    assert auth.TokenRepository is tokens.TokenRepository
    assert auth.hash_token("x") == tokens.hash_token("x")
