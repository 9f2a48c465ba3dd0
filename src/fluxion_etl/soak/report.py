"""The soak's closing summary: what was simulated, fired, run and injected, what was checked, and
the verdict naming every violated invariant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fluxion_etl.soak.modes import CARACAS, SoakMode
from fluxion_etl.soak.verdict import Findings


@dataclass
class Summary:
    mode: SoakMode
    seed: int
    started: datetime
    ready_at: datetime
    stopped_at: datetime
    fires: dict[str, int]
    runs: dict[tuple[str, str], int]
    klk_faults: dict[str, int]
    actions: dict[str, int]
    missed_actions: list[str]
    commit_failures_seen: int
    findings: Findings
    workdir: Path
    real_seconds: float = 0.0
    extra: list[str] = field(default_factory=list)

    @property
    def simulated_days(self) -> float:
        return (self.stopped_at - self.started).total_seconds() / 86_400


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"


def print_summary(summary: Summary, say: Callable[[str], None]) -> None:
    mode, findings = summary.mode, summary.findings
    verdict = "FAILED" if findings.violations else "PASSED"
    say("")
    say(f"== soak {mode.name}, seed {summary.seed}: {verdict}")
    say(
        f"simulated  {summary.started.astimezone(CARACAS):%a %Y-%m-%d %H:%M} -> "
        f"{summary.stopped_at.astimezone(CARACAS):%a %Y-%m-%d %H:%M} Caracas "
        f"({summary.simulated_days:.2f} days, x{mode.speed:g}) in {summary.real_seconds:.0f} s; "
        f"{mode.locations} locations, {mode.skus} SKUs, ~{mode.lines_per_day} lines/store/day"
    )
    say(f"fires      {sum(summary.fires.values())}: {_counts(summary.fires)}")
    jobs = sorted({job for job, _ in summary.runs})
    for job in jobs:
        by_status = {status: n for (j, status), n in summary.runs.items() if j == job}
        say(f"runs       {job}: {sum(by_status.values())} ({_counts(by_status)})")
    say(f"faults     KLK: {_counts(summary.klk_faults)}")
    say(f"           actions: {_counts(summary.actions)}")
    say(f"           items failed by an injected commit failure: {summary.commit_failures_seen}")
    for missed in summary.missed_actions:
        say(f"           missed: {missed}")
    say(f"checked    {_counts(dict(findings.checked))}")
    for note in findings.notes:
        say(f"note       {note}")
    for line in summary.extra:
        say(line)
    if findings.violations:
        say(f"violated   {', '.join(findings.failed_invariants)}")
        for line in findings.lines():
            say(line)
        say(f"logs       {summary.workdir}")
    else:
        say("verdict    every invariant held")
