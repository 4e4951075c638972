"""notifier_common.logging does not load rich into the services' processes (decision 0054)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import notifier_common.logging as logging_setup
assert "rich" not in sys.modules, "rich was imported"
logging_setup.configure_logging(level="INFO", json=False)
log = logging_setup.get_logger("t")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
import rich  # still importable afterwards (typer's help uses it)
"""


def test_structlog_is_imported_without_rich_and_tracebacks_still_render() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "boom" in done.stderr
    assert "ZeroDivisionError: division by zero" in done.stderr
