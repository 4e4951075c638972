"""Schemathesis against the live app (in-process ASGI, real database and Redis, admin token):
no 500 and no response that violates its declared schema, on every route."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import respx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from notifier.api.app import create_app
from notifier.models import LetterStatus
from notifier.settings import NotifierSettings
from notifier_common.db import create_engine, create_sessionmaker
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import insert

from tests.notifier.letters.conftest import Upstream
from tests.notifier.operator.conftest import letter_row
from tests.notifier.operator.test_config_api import GATEWAY, PROVIDER

MAX_EXAMPLES = 12
# Found by this test in routes the operator issue does not own; reported, not fixed here.
KNOWN: dict[str, str] = {}


def known(failure: str) -> bool:
    return any(failure.startswith(op + " ") and text in failure for op, text in KNOWN.items())


async def seed(database_url: str) -> None:
    from notifier.models import Letter

    engine = create_engine(database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as s, s.begin():
            rows = [letter_row(i, status=list(LetterStatus)[i % 7]) for i in range(20)]
            await s.execute(insert(Letter), rows)
    finally:
        await engine.dispose()


@pytest.fixture
def upstream() -> Iterator[None]:
    data = Upstream()
    for i in range(10):
        data.add_client(f"client-{i}")
    with respx.mock(assert_all_called=False) as router:
        data.install(router)
        router.get(f"{GATEWAY}/v1/providers").respond(200, json=[PROVIDER])
        router.put(url__regex=rf"{GATEWAY}/v1/providers/[^/]+/switch").respond(200, json=PROVIDER)
        router.get(url__regex=rf"{GATEWAY}/v1/providers/[^/]+/switch/history").respond(200, json=[])
        router.get(f"{GATEWAY}/v1/suppressions").respond(200, json={"items": []})
        yield


def test_no_server_error_and_no_schema_violation(
    settings: NotifierSettings, database_url: str, upstream: None
) -> None:
    from notifier.auth.tokens import create_token

    asyncio.run(seed(database_url))
    token = asyncio.run(create_token(database_url, name="fuzzer", scopes=["admin"]))
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                failures += run_operation(operation, mode, token)
    finally:
        asgi.shutdown_lifespans()
    unexpected = [f for f in failures if not known(f)]
    assert unexpected == [], "\n".join(f[:600] for f in unexpected)


def run_operation(operation: Any, mode: GenerationMode, token: str) -> list[str]:
    found: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"},
            checks=[not_a_server_error, response_schema_conformance],
        )

    try:
        check()
    except Unsatisfiable:  # negative mode of an operation without parameters: nothing to break
        if mode != GenerationMode.NEGATIVE:
            raise
    except Exception as exc:  # check failures, and app errors the ASGI client re-raises
        found.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: {exc}")
    return found
