"""The letter engine's fixtures (fake clock, respx upstream + recording gateway), reused."""

from tests.notifier.letters.conftest import (  # noqa: F401 (fixtures)
    clock,
    gateway,
    http,
    letter_engine,
    router,
    upstream,
)
