"""The soak's short mode, run as CI runs it: one simulated day, five locations, a fixed seed.

It needs the PostgreSQL server binaries (``initdb``, ``pg_ctl``): the soak creates its own
cluster. Locally it is skipped without them; with FLUXION_TEST_REQUIRE_POSTGRES=1 (CI) it fails.
No assertion on wall time: a loaded machine makes the soak slower (its clock slows down with the
service), never wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fluxion_etl.soak.cluster import find_bindir

SEED = 7
TIMEOUT = 1800  # real seconds, only so that a wedged soak ends; four minutes on a calm machine


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT + 60)
def test_short_soak_loses_duplicates_and_strands_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if find_bindir() is None:
        if os.environ.get("FLUXION_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("the soak needs initdb and pg_ctl (PostgreSQL server binaries)")
        pytest.skip("initdb/pg_ctl not installed")
    result = subprocess.run(
        [sys.executable, "-m", "fluxion_etl.soak", "--mode", "short", "--seed", str(SEED)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    with capsys.disabled():  # the summary goes to the CI log whatever the outcome
        print("\n" + _verdict(result.stdout))
    print(result.stdout)  # the whole run (plan, actions, summary) when the test fails
    print(result.stderr[-5000:], file=sys.stderr)
    assert f"== soak short, seed {SEED}" in result.stdout
    assert result.returncode == 0, _verdict(result.stdout)
    assert "every invariant held" in result.stdout


def _verdict(output: str) -> str:
    """The summary from its first line, so the failure names every violated invariant."""
    start = output.find("== soak")
    return output[start:] if start >= 0 else output[-3000:]
