"""Decoding in several threads of a fresh process (every worker process is one).

msgspec builds a type's decoding plan on first use; two threads doing so at once crashed the
worker (SIGSEGV) in the soak. Each child process here starts threads that decode their first
payloads together, with a tiny GIL switch interval so that they interleave; a crash is an exit
code of -11 (or any non-zero code) instead of the decoded line counts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "klk-samples"

CHILD = """
import sys, threading
from zoneinfo import ZoneInfo
from fluxion_etl.klk.decode import decode_catalogue, decode_sales

sys.setswitchinterval(1e-6)
sales = open(sys.argv[1], "rb").read()
catalogue = open(sys.argv[2], "rb").read()
zone = ZoneInfo("America/Caracas")
start = threading.Barrier(8)
counts = []

def work(index):
    start.wait()
    if index % 2:
        counts.append(len(decode_sales(sales, warehouse_code="APP-TPF", zone=zone).lines))
    else:
        counts.append(len(decode_catalogue(catalogue, warehouse_code="APP-TPF").items))

threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sorted(counts))
"""


def test_threads_decoding_their_first_payloads_together_do_not_crash_the_process() -> None:
    args = [str(SAMPLES / "ventas_SUC001.json"), str(SAMPLES / "articulos_almacen_APP-TPF.json")]
    outputs = set()
    for _ in range(6):
        child = subprocess.run(
            [sys.executable, "-c", CHILD, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
        outputs.add(child.stdout.strip())
    # every thread decoded its payload: the sample's 3 sales lines and 6 articles, four times each
    assert outputs == {str(sorted([3] * 4 + [6] * 4))}
