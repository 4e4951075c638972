"""Shared code of the notifier and the gateway.

Importing the package first loads structlog and httpx with ``rich`` hidden: both import rich
when it is installed (the operator CLI uses it) for things the services never use — structlog.dev
for a traceback formatter this setup does not use, httpx for its command-line client — about 4 MB
of modules in every api, worker and gateway process (decision 0054). ``import rich`` works as
usual afterwards. Every service module imports ``notifier_common`` before either library.
"""

from __future__ import annotations

import sys


def _import_without_rich() -> None:
    hide = "rich" not in sys.modules
    if hide:
        sys.modules["rich"] = None  # type: ignore[assignment]  # "import rich" raises ImportError
    try:
        import httpx  # noqa: F401
        import structlog  # noqa: F401
    finally:
        if hide:
            del sys.modules["rich"]


_import_without_rich()
