"""Interval arithmetic, checked against a model: a set of integer minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluxion_etl.domain.intervals import (
    Interval,
    clip,
    intersect,
    intersect_all,
    make,
    subtract,
    subtract_all,
    total,
    union,
)

BASE = datetime(2026, 1, 5, tzinfo=UTC)


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def iv(start: int, end: int) -> Interval:
    return Interval(at(start), at(end))


def minutes(intervals: list[Interval]) -> set[int]:
    """The model: every whole minute an interval list covers."""
    points: set[int] = set()
    for x in intervals:
        first = int((x.start - BASE) / timedelta(minutes=1))
        last = int((x.end - BASE) / timedelta(minutes=1))
        points.update(range(first, last))
    return points


def is_normalised(intervals: list[Interval]) -> bool:
    return all(a.end < b.start for a, b in pairwise(intervals))


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    start = draw(st.integers(0, 200))
    return iv(start, start + draw(st.integers(1, 60)))


interval_lists = st.lists(intervals(), max_size=8)


def test_empty_or_reversed_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        iv(5, 5)
    with pytest.raises(ValueError, match="empty"):
        iv(6, 5)
    assert make(at(5), at(5)) is None


def test_adjacent_intervals_merge_in_a_union() -> None:
    assert union([iv(10, 20), iv(0, 10), iv(30, 40)]) == [iv(0, 20), iv(30, 40)]


def test_subtract_cuts_holes_and_keeps_the_edges() -> None:
    assert subtract(iv(0, 100), [iv(10, 20), iv(15, 30), iv(90, 120)]) == [
        iv(0, 10),
        iv(30, 90),
    ]


def test_intersect_of_disjoint_intervals_is_none() -> None:
    assert intersect(iv(0, 10), iv(10, 20)) is None
    assert intersect(iv(0, 10), iv(5, 20)) == iv(5, 10)


def test_total_counts_overlaps_once() -> None:
    assert total([iv(0, 10), iv(5, 15)]) == timedelta(minutes=15)


@given(interval_lists)
def test_union_covers_exactly_its_inputs_and_is_normalised(xs: list[Interval]) -> None:
    result = union(xs)
    assert minutes(result) == minutes(xs)
    assert is_normalised(result)


@given(intervals(), interval_lists)
def test_subtract_matches_set_difference(a: Interval, bs: list[Interval]) -> None:
    result = subtract(a, bs)
    assert minutes(result) == minutes([a]) - minutes(bs)
    assert is_normalised(result)


@given(interval_lists, interval_lists)
def test_subtract_all_matches_set_difference(xs: list[Interval], ys: list[Interval]) -> None:
    result = subtract_all(xs, ys)
    assert minutes(result) == minutes(xs) - minutes(ys)
    assert is_normalised(result)


@given(interval_lists, interval_lists)
def test_intersect_all_matches_set_intersection(xs: list[Interval], ys: list[Interval]) -> None:
    result = intersect_all(xs, ys)
    assert minutes(result) == minutes(xs) & minutes(ys)
    assert is_normalised(result)


@given(intervals(), intervals())
def test_intersect_matches_set_intersection(a: Interval, b: Interval) -> None:
    result = intersect(a, b)
    assert minutes([result] if result else []) == minutes([a]) & minutes([b])


@given(interval_lists, intervals())
def test_clip_keeps_only_the_window(xs: list[Interval], window: Interval) -> None:
    assert minutes(clip(xs, window)) == minutes(xs) & minutes([window])


@given(interval_lists)
def test_total_is_the_size_of_the_union(xs: list[Interval]) -> None:
    assert total(xs) == timedelta(minutes=len(minutes(xs)))
