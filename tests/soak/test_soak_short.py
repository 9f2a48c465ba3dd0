"""The soak's short mode, run as CI runs it: one simulated day, five locations, a fixed seed.

It needs the PostgreSQL server binaries (``initdb``, ``pg_ctl``): the soak creates its own
cluster. Locally it is skipped without them; with FLUXION_TEST_REQUIRE_POSTGRES=1 (CI) it fails.
The soak starts in the background with the test session (``soak_background.py``) and this test
collects its verdict. No assertion on wall time: a loaded machine makes the soak slower (its clock
slows down with the service), never wrong.
"""

from __future__ import annotations

import os
import sys

import pytest
from soak_background import SEED, SOAK, TIMEOUT

from fluxion_etl.soak.cluster import find_bindir


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT + 120)
def test_short_soak_loses_duplicates_and_strands_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if find_bindir() is None:
        if os.environ.get("FLUXION_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("the soak needs initdb and pg_ctl (PostgreSQL server binaries)")
        pytest.skip("initdb/pg_ctl not installed")
    result = SOAK.wait()
    with capsys.disabled():  # the summary goes to the CI log whatever the outcome
        print(f"\n(soak ran {result.seconds:.0f} s beside the suite)\n" + _verdict(result.stdout))
    print(result.stdout)  # the whole run (plan, actions, summary) when the test fails
    print(result.stderr[-5000:], file=sys.stderr)
    assert f"== soak short, seed {SEED}" in result.stdout
    assert result.returncode == 0, _verdict(result.stdout)
    assert "every invariant held" in result.stdout


def _verdict(output: str) -> str:
    """The summary from its first line, so the failure names every violated invariant."""
    start = output.find("== soak")
    return output[start:] if start >= 0 else output[-3000:]
