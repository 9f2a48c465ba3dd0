"""Deliberate process death at named points, for the crash tests and the soak (SPEC §4.5).

``FLUXION_CRASH_AT="loading:tienda_03,committed:tienda_02"`` makes the process SIGKILL itself at
those points: ``loading:<location>`` inside the location's load transaction before it commits,
``committed:<location>`` right after it committed. Unset in production (one env lookup).
"""

from __future__ import annotations

import os
import signal


def crash_point(point: str, location_id: str) -> None:
    wanted = os.environ.get("FLUXION_CRASH_AT")
    if wanted and f"{point}:{location_id}" in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
