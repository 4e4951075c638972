"""httpcore imports sniffio on every request; without sniffio installed that failed import must be
instant (a None entry in sys.modules), not a search of sys.path per request."""

from __future__ import annotations

import importlib.util
import sys

import notifier_common.http  # noqa: F401  (the module under test installs the guard)
import pytest


@pytest.mark.skipif(
    sys.modules.get("sniffio") is not None, reason="sniffio is installed: nothing to guard"
)
def test_a_missing_sniffio_fails_to_import_without_a_path_search() -> None:
    assert "sniffio" in sys.modules
    assert sys.modules["sniffio"] is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("sniffio")
