"""Half-open time intervals ``[start, end)`` and set operations on lists of them (SPEC §4.9).

The coverage ledger and gap reports are set arithmetic on time: what was synced (a union of
ranges), what is still missing (opening hours minus coverage). Keeping that arithmetic pure and
separately property-tested lets the store code stay a thin read-modify-write around it.

Lists returned by these functions are *normalised*: sorted, non-empty, pairwise disjoint and
non-adjacent (touching intervals are merged), so two equal sets always have equal lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """``[start, end)``; never empty (an empty stretch is simply absent from a list)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"empty or reversed interval [{self.start}, {self.end})")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def touches(self, other: Interval) -> bool:
        """Overlapping or adjacent: the two would merge into one interval."""
        return self.start <= other.end and other.start <= self.end


def make(start: datetime, end: datetime) -> Interval | None:
    """An interval, or None when ``[start, end)`` is empty (saves callers an if)."""
    return Interval(start, end) if start < end else None


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The normalised union: overlapping and adjacent intervals merged."""
    merged: list[Interval] = []
    for current in sorted(intervals):
        if merged and merged[-1].end >= current.start:
            last = merged[-1]
            if current.end > last.end:
                merged[-1] = Interval(last.start, current.end)
        else:
            merged.append(current)
    return merged


def intersect(a: Interval, b: Interval) -> Interval | None:
    return make(max(a.start, b.start), min(a.end, b.end))


def intersect_all(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """Points in both sets."""
    left, right = union(a), union(b)
    parts = (intersect(x, y) for x in left for y in right if x.overlaps(y))
    return union(part for part in parts if part is not None)


def subtract(a: Interval, bs: Iterable[Interval]) -> list[Interval]:
    """The parts of ``a`` covered by none of ``bs``."""
    remaining: list[Interval] = []
    cursor = a.start
    for b in union(bs):
        if b.end <= cursor or not b.overlaps(a):
            continue
        piece = make(cursor, b.start)
        if piece is not None:
            remaining.append(piece)
        cursor = max(cursor, b.end)
    tail = make(cursor, a.end)
    if tail is not None:
        remaining.append(tail)
    return remaining


def subtract_all(a: Iterable[Interval], bs: Iterable[Interval]) -> list[Interval]:
    """Points of ``a`` in none of ``bs``."""
    removed = union(bs)
    return union(piece for x in union(a) for piece in subtract(x, removed))


def clip(intervals: Iterable[Interval], window: Interval) -> list[Interval]:
    """The normalised parts of ``intervals`` inside ``window``."""
    return intersect_all(intervals, [window])


def total(intervals: Iterable[Interval]) -> timedelta:
    """Length of the union (overlaps counted once)."""
    return sum((x.duration for x in union(intervals)), timedelta())
