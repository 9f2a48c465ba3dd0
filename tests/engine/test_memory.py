"""engine.memory: payload-sized blocks go back to the system once freed (glibc only)."""

from __future__ import annotations

import platform
import threading
from pathlib import Path

import pytest

from fluxion_etl.engine.memory import release_memory, tune_allocator

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc allocator"
)


def _resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _payloads_in_a_thread(count: int, size: int) -> None:
    def work() -> None:
        for n in range(count):
            body = bytes([n % 251]) * size  # touched: resident while alive
            del body

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


@glibc_only
def test_tuning_is_idempotent() -> None:
    assert tune_allocator() is True
    assert tune_allocator() is True


@glibc_only
def test_freed_payloads_do_not_stay_resident() -> None:
    tune_allocator()
    release_memory()
    before = _resident_mb()
    _payloads_in_a_thread(count=30, size=6 * 2**20)
    release_memory()
    assert _resident_mb() - before < 12


def test_release_memory_never_raises() -> None:
    release_memory()
