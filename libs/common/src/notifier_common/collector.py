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
- The worker collects the young generation once per :data:`WORKER_YOUNG_THRESHOLD`
  allocations instead of 700 (decision 0102): a drain batch's decoded contexts live through
  the batch and each young collection walked the ones allocated since the last; the drain
  workers spent ~6 µs per letter in the collector. Possible once the gateway call stopped
  leaving reference cycles (a drain worker then peaked at 199 MB with this threshold).

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
#: Allocations per young collection in the notifier worker (CPython's default: 700).
WORKER_YOUNG_THRESHOLD = 10_000


def tune_collector(
    *,
    young_threshold: int | None = None,
    middle_threshold: int | None = MIDDLE_GENERATION_THRESHOLD,
) -> Callable[[], None]:
    """Freeze what is alive now and (unless None) collect the young generation less often
    than ``young_threshold`` allocations and the middle one less often than every
    ``middle_threshold`` young collections; returns the undo."""
    young, middle, old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(
        max(young, young_threshold or 0),
        max(middle, middle_threshold or 0),
        old,
    )

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
