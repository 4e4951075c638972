"""The garbage collector tuned for a long-running service process (decisions 0057, 0061, 0080).

- Every object alive once a process has started (modules, FastAPI, SQLAlchemy and pydantic
  internals: 100-160k objects) is frozen (``gc.freeze``): full collections no longer walk it.
  A full collection of the unfrozen notifier worker took 70-90 ms on this machine, and every
  event and letter in flight waited for it.
- The gateway also collects the middle generation once per
  :data:`MIDDLE_GENERATION_THRESHOLD` young collections instead of 10: a batch's models and
  rows live through the batch, reach the middle generation, and each of its collections walked
  them all again. The worker keeps CPython's 10: with 100, cyclic garbage lived longer in its
  drain lanes and the drain workers peaked ~5 MB higher (decision 0080).

No collection before the freeze: freezing is O(1), a full collection cost every test that
starts a service ~0.2 s, and startup leaves little garbage. Undone on exit (tests start several
services in one process).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Young collections per collection of the middle generation (CPython's default: 10).
MIDDLE_GENERATION_THRESHOLD = 100


def tune_collector(
    *, middle_threshold: int | None = MIDDLE_GENERATION_THRESHOLD
) -> Callable[[], None]:
    """Freeze what is alive now and (unless ``middle_threshold`` is None) collect the middle
    generation less often; returns the undo."""
    young, middle, old = gc.get_threshold()
    gc.freeze()
    if middle_threshold is not None:
        gc.set_threshold(young, max(middle, middle_threshold), old)

    def restore() -> None:
        gc.set_threshold(young, middle, old)
        gc.unfreeze()

    return restore


@contextmanager
def collector_tuned() -> Iterator[None]:
    """:func:`tune_collector` for the duration of the block."""
    restore = tune_collector()
    try:
        yield
    finally:
        restore()
