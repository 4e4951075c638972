"""The processing baseline: an arq worker with the notifier worker's own settings (max_jobs,
poll_delay, queue_read_limit, keep_result, ...) whose ``handle_event`` does nothing."""

from __future__ import annotations

from typing import Any

from arq import Worker, func
from notifier.settings import get_settings
from notifier.worker import use_uvloop, worker_settings


async def handle_event(ctx: dict[str, Any], body: Any) -> str:
    return "noop"


def main() -> None:
    kwargs = worker_settings(get_settings())
    kwargs.update(
        functions=[func(handle_event, name="handle_event")],
        cron_jobs=None,
        on_startup=None,
        on_shutdown=None,
    )
    use_uvloop()  # the same event loop as `notifier worker`
    Worker(**kwargs).run()


if __name__ == "__main__":
    main()
