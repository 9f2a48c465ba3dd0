"""What the checks report: violations, each naming its invariant, and the rows they looked at."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

EXAMPLES = 5  # per invariant: enough to start debugging, few enough to read


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str


@dataclass
class Findings:
    """Violations in the order found, and how many rows of each kind were checked."""

    violations: list[Violation] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # checks that could not run, and why
    _shown: Counter[str] = field(default_factory=Counter)
    _hidden: Counter[str] = field(default_factory=Counter)

    def fail(self, invariant: str, detail: str) -> None:
        """Record a violation; past ``EXAMPLES`` of one invariant only the count grows."""
        if self._shown[invariant] >= EXAMPLES:
            self._hidden[invariant] += 1
            return
        self._shown[invariant] += 1
        self.violations.append(Violation(invariant, detail))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] += n

    @property
    def failed_invariants(self) -> list[str]:
        return sorted({v.invariant for v in self.violations})

    def lines(self) -> list[str]:
        out = [f"  VIOLATED {v.invariant}: {v.detail}" for v in self.violations]
        out += [
            f"  VIOLATED {name}: ... and {n} more like these" for name, n in self._hidden.items()
        ]
        return out
