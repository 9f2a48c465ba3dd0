"""Keep a long-lived process's resident memory at one location's worth, not a run's history.

Each location decodes and loads a few MB of payload in a pool thread. With glibc's defaults the
process's resident set grows with the number of locations a run has seen, although the live
Python objects do not (a ``large`` cycle: ~30 MB live, 265–315 MB resident), for two reasons:

* glibc serves an allocation of 128 KiB or more from ``mmap`` (given back on ``free``), but every
  such block freed raises that threshold to the block's size (up to 32 MiB): after the first
  payload, payload-sized buffers come from the heaps instead, where they fragment;
* each thread allocates from an arena of its own, and freed pages inside an arena stay resident
  until ``malloc_trim`` gives them back.

``tune_allocator`` fixes the threshold (fixing it also stops the adjustment); ``release_memory``
is called after each location. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import platform
import threading
from collections.abc import Callable
from functools import cache

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 1 << 20  # payloads and their decoding buffers are larger: always mmap

_lock = threading.Lock()
_tuned = False


@cache
def _glibc_call(name: str) -> Callable[..., int] | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:  # an unusual build may report glibc and still not load it: then do nothing
        function: Callable[..., int] | None = getattr(ctypes.CDLL(None), name, None)
    except OSError:
        return None
    return function


def tune_allocator() -> bool:
    """Once per process: blocks of ``MMAP_THRESHOLD_BYTES`` or more always come from ``mmap``.

    True when the allocator is (now or already) tuned."""
    global _tuned  # noqa: PLW0603 - a once-only flag
    with _lock:
        if not _tuned:
            mallopt = _glibc_call("mallopt")
            _tuned = bool(mallopt and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
        return _tuned


def release_memory() -> None:
    """Give the free pages of every malloc arena back to the operating system."""
    trim = _glibc_call("malloc_trim")
    if trim is not None:
        trim(0)
