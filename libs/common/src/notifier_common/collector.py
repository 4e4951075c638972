"""The garbage collector (and the C allocator) tuned for a long-running service process
(decisions 0057, 0061, 0080, 0084).

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

import ctypes
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


#: glibc's ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (malloc.h)
_M_MMAP_THRESHOLD = -3


def set_mmap_threshold(nbytes: int) -> bool:
    """glibc: serve allocations of at least ``nbytes`` with their own mmap, unmapped when
    freed. Setting it also stops glibc from raising the threshold to the largest block freed
    so far, after which multi-MB request bodies came from the heap, whose freed pages stayed
    resident (decision 0084). False where there is no glibc ``mallopt`` or it refused."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, nbytes))
