"""Hand-written cases for the completeness tracker, one rule each (DESIGN.md section 3)."""

from __future__ import annotations

import pytest

from alto_stream.aggregate import AddResult, Child, Completed, Outcome, Tracker
from alto_stream.ancestry import Ancestry, Frame, Kind
from alto_stream.errors import AncestryError, ConfigError

ROOT = Ancestry.root("q", query_time=100.0)


class FakeClock:
    """A settable clock for time-outs and retention."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Record = Ancestry | tuple[Ancestry, object]


def feed(tracker: Tracker, *records: Record) -> list[AddResult]:
    """Add each record (an ancestry, or an (ancestry, value) pair) and return the results."""
    results = []
    for record in records:
        ancestry, value = record if isinstance(record, tuple) else (record, None)
        results.append(tracker.add(ancestry, value))
    return results


def fired(results: list[AddResult]) -> list[Completed]:
    return [r.completed for r in results if r.completed is not None]


def shape(completed: Completed) -> list[tuple[tuple[int, ...], str, object]]:
    return [(c.index, c.kind.name, c.value) for c in completed.children]


# -- one level ----------------------------------------------------------------


def test_zero_child_split_fires_at_once() -> None:
    tracker = Tracker(0, 1)
    result = tracker.add(ROOT.end_marker("a", 0))
    assert result.outcome is Outcome.ACCEPTED
    assert result.ancestor_id == "q"
    assert result.completed == Completed(ROOT, ())
    assert tracker.is_fired("q")
    assert len(tracker) == 0


@pytest.mark.parametrize("end_first", [False, True])
def test_end_marker_before_or_after_children(end_first: bool) -> None:
    tracker = Tracker(0, 1)
    end = ROOT.end_marker("a", 3)
    children: list[Record] = [(ROOT.child("a", i), f"v{i}") for i in (2, 0, 1)]
    records = [end, *children] if end_first else [*children, end]
    results = feed(tracker, *records)
    assert [r.completed is not None for r in results] == [False, False, False, True]
    (completed,) = fired(results)
    assert shape(completed) == [((0,), "DATA", "v0"), ((1,), "DATA", "v1"), ((2,), "DATA", "v2")]
    assert all(c.ok and c.reason is None for c in completed.children)
    assert completed.children[0].ancestry == ROOT.child("a", 0)


def test_count_on_last_child_needs_no_end_marker() -> None:
    tracker = Tracker(0, 1)
    results = feed(
        tracker,
        (ROOT.child("a", 1, count=2), "last"),
        (ROOT.child("a", 0), "first"),
    )
    assert results[0].completed is None
    (completed,) = fired(results)
    assert [c.value for c in completed.children] == ["first", "last"]


def test_count_known_but_a_child_missing_never_fires() -> None:
    tracker = Tracker(0, 1)
    results = feed(tracker, ROOT.child("a", 0), ROOT.child("a", 2), ROOT.end_marker("a", 3))
    assert fired(results) == []
    assert tracker.pending() == ["q"]
    assert len(tracker) == 1


def test_skip_and_error_markers_count_as_done_children() -> None:
    tracker = Tracker(0, 1)
    results = feed(
        tracker,
        ROOT.child("a", 0).marker(Kind.SKIP, "filtered"),
        (ROOT.child("a", 1), "kept"),
        ROOT.child("a", 2).marker(Kind.ERROR, "boom"),
        ROOT.end_marker("a", 3),
    )
    (completed,) = fired(results)
    assert shape(completed) == [((0,), "SKIP", None), ((1,), "DATA", "kept"), ((2,), "ERROR", None)]
    assert [c.ok for c in completed.children] == [False, True, False]
    assert [c.reason for c in completed.children] == ["filtered", None, "boom"]


def test_marker_value_is_dropped() -> None:
    tracker = Tracker(0, 1)
    results = feed(
        tracker, (ROOT.child("a", 0, count=1).marker(Kind.SKIP, "no"), "ignored payload")
    )
    (completed,) = fired(results)
    assert completed.children[0].value is None


# -- nesting ------------------------------------------------------------------


def test_nested_depth_three_fires_only_when_every_subtree_is_done() -> None:
    # q -> 2 answers; answer 0 -> 2 sentences (sentence 1 has zero claims), answer 1 skipped
    tracker = Tracker(0, 3)
    a0 = ROOT.child("r", 0)
    s00, s01 = a0.child("s", 0), a0.child("s", 1)
    records: list[Record] = [
        (s00.child("c", 1, count=2), "c001"),
        ROOT.end_marker("r", 2),
        a0.end_marker("s", 2),
        s01.end_marker("c", 0),
        ROOT.child("r", 1).marker(Kind.SKIP, "off topic"),
        (s00.child("c", 0), "c000"),  # the last one needed
    ]
    results = feed(tracker, *records)
    assert [r.completed is not None for r in results] == [False] * 5 + [True]
    (completed,) = fired(results)
    assert shape(completed) == [
        ((0, 0, 0), "DATA", "c000"),
        ((0, 0, 1), "DATA", "c001"),
        ((1,), "SKIP", None),
    ]


def test_intermediate_depth_groups_by_its_own_ancestor() -> None:
    tracker = Tracker(1, 3)
    a0, a1 = ROOT.child("r", 0), ROOT.child("r", 1, count=2)
    records: list[Record] = [
        (a0.child("s", 0).child("c", 0, count=1), "x"),
        a1.end_marker("s", 0),
        a0.end_marker("s", 1),
    ]
    results = feed(tracker, *records)
    completed = fired(results)
    assert [c.ancestor for c in completed] == [a1, a0]
    assert completed[0].ancestor.path[-1].count == 2  # the frame counts it had
    assert completed[0].children == ()
    assert shape(completed[1]) == [((0, 0), "DATA", "x")]
    assert results[0].ancestor_id == a0.id


def test_marker_on_an_inner_node_closes_its_subtree() -> None:
    tracker = Tracker(0, 2)
    a0 = ROOT.child("r", 0, count=1)
    results = feed(tracker, (a0.child("s", 0), "orphan"), a0.marker(Kind.ERROR, "splitter crashed"))
    (completed,) = fired(results)
    assert shape(completed) == [((0,), "ERROR", None)]


# -- attempts -----------------------------------------------------------------


def test_second_attempt_completing_first_wins_and_attempts_never_mix() -> None:
    tracker = Tracker(0, 1)
    results = feed(
        tracker,
        (ROOT.child("a", 0), "a0"),
        (ROOT.child("a", 1), "a1"),
        (ROOT.child("b", 1, count=2), "b1"),  # attempt b made only 2 children
        ROOT.end_marker("a", 3),  # a is still missing index 2
        (ROOT.child("b", 0), "b0"),  # b completes first
        (ROOT.child("a", 2), "a2"),  # a would complete now: too late
    )
    (completed,) = fired(results)
    assert [c.value for c in completed.children] == ["b0", "b1"]
    assert results[4].completed is completed
    assert results[5].outcome is Outcome.STALE


def test_children_of_other_attempts_do_not_fill_gaps() -> None:
    tracker = Tracker(0, 1)
    results = feed(
        tracker, ROOT.child("a", 0), ROOT.child("b", 1), ROOT.end_marker("a", 2), ROOT.child("b", 0)
    )
    assert fired(results) == []


def test_inner_node_takes_its_first_complete_attempt() -> None:
    tracker = Tracker(0, 2)
    a0 = ROOT.child("r", 0, count=1)
    results = feed(
        tracker,
        (a0.child("x", 0), "x0"),  # attempt x of a0: count unknown yet
        (a0.child("y", 0, count=1), "y0"),  # attempt y of a0 completes a0 and so the root
        a0.end_marker("x", 1),
    )
    (completed,) = fired(results)
    assert [c.value for c in completed.children] == ["y0"]
    assert results[2].outcome is Outcome.STALE


def test_inner_winner_stays_when_another_attempt_completes_later() -> None:
    tracker = Tracker(0, 2)
    a0 = ROOT.child("r", 0)
    results = feed(
        tracker,
        ROOT.end_marker("r", 2),
        (a0.child("y", 0, count=1), "y0"),  # a0 is complete through attempt y
        (a0.child("x", 0), "x0"),
        (a0.child("x", 1, count=2), "x1"),  # attempt x completes too, later
        (ROOT.child("r", 1).child("s", 0, count=1), "r1"),
    )
    (completed,) = fired(results)
    assert [c.value for c in completed.children] == ["y0", "r1"]
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 5


# -- duplicates and staleness -------------------------------------------------


def test_redelivered_records_are_duplicates_without_effect() -> None:
    tracker = Tracker(0, 1)
    leaf, end = ROOT.child("a", 0), ROOT.end_marker("a", 2)
    results = feed(tracker, (leaf, "first"), (leaf, "second"), end, end)
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
    ]
    assert all(r.ancestor_id == "q" for r in results)
    (completed,) = fired(feed(tracker, (ROOT.child("a", 1), "other")))
    assert [c.value for c in completed.children] == ["first", "other"]


@pytest.mark.parametrize("marker_first", [False, True])
def test_marker_and_data_for_the_same_path_first_wins(marker_first: bool) -> None:
    tracker = Tracker(0, 1)
    data: tuple[Ancestry, object] = (ROOT.child("a", 0), "payload")
    skip = ROOT.child("a", 0).marker(Kind.SKIP, "dropped")
    first, second = (skip, data) if marker_first else (data, skip)
    results = feed(tracker, first, second, ROOT.end_marker("a", 1))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.ACCEPTED]
    (completed,) = fired(results)
    assert shape(completed) == (
        [((0,), "SKIP", None)] if marker_first else [((0,), "DATA", "payload")]
    )


def test_everything_after_firing_is_stale() -> None:
    tracker = Tracker(0, 1)
    feed(tracker, ROOT.end_marker("a", 0))
    results = feed(
        tracker,
        ROOT.end_marker("a", 0),
        ROOT.child("b", 0),
        ROOT.child("c", 0).marker(Kind.SKIP, "x"),
    )
    assert [r.outcome for r in results] == [Outcome.STALE] * 3
    assert len(tracker) == 0


def test_other_roots_are_independent() -> None:
    tracker = Tracker(0, 1)
    other = Ancestry.root("q2", query_time=0.0)
    results = feed(tracker, other.child("a", 0), ROOT.end_marker("a", 0), other.end_marker("a", 1))
    assert [c.ancestor.query_id for c in fired(results)] == ["q", "q2"]


# -- what is not for this aggregate -------------------------------------------


def test_markers_about_the_ancestor_or_above_are_forwarded() -> None:
    tracker = Tracker(1, 2)
    above = [
        ROOT.marker(Kind.SKIP, "whole query filtered"),  # above the ancestor
        ROOT.end_marker("r", 2),  # end of the split one level up
    ]
    for record in above:
        assert tracker.add(record) == AddResult(Outcome.FORWARD)
    a0, a1 = ROOT.child("r", 0), ROOT.child("r", 1)
    assert tracker.add(a0.marker(Kind.ERROR, "the ancestor itself failed")) == AddResult(
        Outcome.FORWARD, ancestor_id=a0.id
    )
    assert tracker.add(a1.marker(Kind.TIMEOUT, "an aggregate below gave up")) == AddResult(
        Outcome.FORWARD, ancestor_id=a1.id
    )
    assert len(tracker) == 0


def test_the_ancestors_own_marker_ends_it_once_and_drops_its_children() -> None:
    # A split that failed after 2 children: its ERROR marker is the ancestor's one
    # result; the children already counted are dropped, later ones are stale.
    tracker = Tracker(0, 1, clock=lambda: 0.0)
    assert tracker.add(ROOT.child("s", 0), "a").outcome is Outcome.ACCEPTED
    assert tracker.add(ROOT.child("s", 1), "b").outcome is Outcome.ACCEPTED
    error = ROOT.marker(Kind.ERROR, "RuntimeError: boom")
    assert tracker.add(error) == AddResult(Outcome.FORWARD, ancestor_id="q")
    assert len(tracker) == 0 and tracker.is_fired("q")
    assert tracker.expire(0.0) == []  # nothing left to time out
    assert tracker.add(ROOT.child("s", 2), "c").outcome is Outcome.STALE
    assert tracker.add(error) == AddResult(Outcome.STALE, ancestor_id="q")  # a redelivery


def test_a_marker_about_an_ancestor_that_fired_is_stale() -> None:
    tracker = Tracker(0, 1)
    assert tracker.add(ROOT.end_marker("s", 1)).outcome is Outcome.ACCEPTED
    assert tracker.add(ROOT.child("s", 0), "a").completed is not None
    late = ROOT.marker(Kind.ERROR, "a re-run of the split failed")
    assert tracker.add(late) == AddResult(Outcome.STALE, ancestor_id="q")


def test_shallower_data_is_forwarded() -> None:
    assert Tracker(2, 3).add(ROOT.child("r", 0)).outcome is Outcome.FORWARD


@pytest.mark.parametrize(
    "record",
    [
        ROOT.child("r", 0),  # data above leaf_depth
        ROOT.child("r", 0).child("s", 0).child("t", 0),  # deeper than leaf_depth
        ROOT.child("r", 0).child("s", 0).end_marker("t", 1),  # end marker deeper too
        ROOT.child("r", 0).child("s", 0).child("t", 0).marker(Kind.SKIP, ""),
    ],
)
def test_records_at_the_wrong_depth_are_errors(record: Ancestry) -> None:
    with pytest.raises(AncestryError, match="path length"):
        Tracker(0, 2).add(record)


def test_data_at_the_ancestors_own_depth_is_an_error() -> None:
    with pytest.raises(AncestryError, match="expected data records of path length 2"):
        Tracker(1, 2).add(ROOT.child("r", 0))


def test_conflicting_counts_are_errors_and_leave_state_untouched() -> None:
    tracker = Tracker(0, 1)
    tracker.add(ROOT.end_marker("a", 2))
    with pytest.raises(AncestryError, match="conflicting split sizes"):
        tracker.add(ROOT.end_marker("a", 3))
    with pytest.raises(AncestryError, match="conflicting split sizes"):
        tracker.add(ROOT.child("a", 0, count=1))
    with pytest.raises(AncestryError, match="conflicting split sizes"):
        tracker.add(ROOT.child("a", 5))  # index past the known count
    results = feed(tracker, ROOT.child("a", 0), ROOT.child("a", 1))
    assert fired(results)[0].children[1].index == (1,)


def test_count_below_an_index_already_seen_is_an_error() -> None:
    tracker = Tracker(0, 2)
    a0 = ROOT.child("r", 0)
    tracker.add(a0.child("s", 4))
    with pytest.raises(AncestryError, match="conflicting split sizes"):
        tracker.add(a0.end_marker("s", 3))
    with pytest.raises(AncestryError, match="conflicting split sizes"):
        tracker.add(a0.child("s", 1, count=2))
    assert tracker.add(a0.child("s", 1)).outcome is Outcome.ACCEPTED


def test_malformed_frames_are_errors() -> None:
    bad_end = Ancestry("q", 0.0, (Frame("a", 1, 2),), kind=Kind.END)
    with pytest.raises(AncestryError, match="index == count"):
        Tracker(0, 1).add(bad_end)
    with pytest.raises(AncestryError, match="below its split's count"):
        Tracker(0, 1).add(Ancestry("q", 0.0, (Frame("a", 3, 2),)))


def test_bad_levels_are_config_errors() -> None:
    for depth, leaf_depth in [(1, 1), (2, 1), (-1, 1)]:
        with pytest.raises(ConfigError, match="depth < leaf_depth"):
            Tracker(depth, leaf_depth)


# -- time-outs ----------------------------------------------------------------


def test_expire_with_known_count_marks_each_missing_index() -> None:
    clock = FakeClock()
    tracker = Tracker(0, 2, clock=clock)
    a1 = ROOT.child("r", 1)
    feed(tracker, ROOT.end_marker("r", 3), (a1.child("s", 0), "s0"), a1.end_marker("s", 2))
    clock.now += 10.0
    assert tracker.expire(10.0) == []  # not older than the time-out yet
    clock.now += 0.5
    (completed,) = tracker.expire(10.0)
    assert completed.timed_out
    assert completed.ancestor == ROOT
    assert shape(completed) == [
        ((0,), "TIMEOUT", None),
        ((1, 0), "DATA", "s0"),
        ((1, 1), "TIMEOUT", None),
        ((2,), "TIMEOUT", None),
    ]
    timeout = completed.children[0]
    assert timeout.reason == "timed out after 10 s"
    assert not timeout.ok
    assert timeout.ancestry.id == ROOT.child("r", 0).id
    assert completed.children[2].ancestry.id == a1.child("s", 1).id
    assert tracker.is_fired("q")
    assert tracker.expire(0.0) == []
    assert tracker.add(a1.child("s", 1)).outcome is Outcome.STALE


def test_expire_with_unknown_count_adds_one_timeout_after_the_last_index() -> None:
    clock = FakeClock()
    tracker = Tracker(0, 1, clock=clock)
    feed(tracker, (ROOT.child("a", 0), "x"), (ROOT.child("a", 2), "z"))
    clock.now += 5.0
    (completed,) = tracker.expire(1.0)
    assert shape(completed) == [
        ((0,), "DATA", "x"),
        ((1,), "TIMEOUT", None),
        ((2,), "DATA", "z"),
        ((3,), "TIMEOUT", None),
    ]


def test_expire_takes_the_best_attempt_and_complete_subtrees_whole() -> None:
    clock = FakeClock()
    tracker = Tracker(0, 2, clock=clock)
    a0 = ROOT.child("r", 0)
    feed(
        tracker,
        ROOT.child("weak", 0).child("s", 0),  # attempt "weak": nothing done
        (a0.child("s", 0), "a"),
        (a0.child("s", 1, count=2), "b"),  # child 0 of attempt "r" is complete
        ROOT.end_marker("r", 2),
    )
    clock.now += 60.0
    (completed,) = tracker.expire(30.0)
    assert shape(completed) == [
        ((0, 0), "DATA", "a"),
        ((0, 1), "DATA", "b"),
        ((1,), "TIMEOUT", None),
    ]


def test_expire_only_fires_old_ancestors() -> None:
    clock = FakeClock()
    tracker = Tracker(0, 1, clock=clock)
    old, young = Ancestry.root("old", query_time=0.0), Ancestry.root("young", query_time=0.0)
    tracker.add(old.child("a", 0))
    clock.now += 20.0
    tracker.add(young.child("a", 0))
    clock.now += 20.0
    assert [c.ancestor.query_id for c in tracker.expire(30.0)] == ["old"]
    assert tracker.pending() == ["young"]


def test_restored_arrival_time_drives_expiry() -> None:
    clock = FakeClock(1000.0)
    tracker = Tracker(0, 1, clock=clock)
    tracker.add(ROOT.child("a", 0), at=900.0)
    assert len(tracker.expire(50.0)) == 1


# -- fired memory -------------------------------------------------------------


def test_mark_fired_drops_pending_state_and_makes_records_stale() -> None:
    tracker = Tracker(0, 1)
    tracker.add(ROOT.child("a", 0))
    tracker.mark_fired("q", at=5.0)
    assert tracker.pending() == []
    assert tracker.is_fired("q")
    assert tracker.add(ROOT.end_marker("a", 1)).outcome is Outcome.STALE


def test_forget_fired_after_retention() -> None:
    clock = FakeClock(0.0)
    tracker = Tracker(0, 1, fired_retention=100.0, clock=clock)
    tracker.add(ROOT.end_marker("a", 0))  # fires at 0
    tracker.mark_fired("other", at=50.0)
    tracker.mark_fired("remarked", at=10.0)
    tracker.mark_fired("remarked", at=90.0)
    clock.now = 100.0
    assert len(tracker.forget_fired()) == 0
    clock.now = 120.0
    assert len(tracker.forget_fired()) == 1
    assert not tracker.is_fired("q")
    assert tracker.is_fired("remarked")  # its newer mark stands
    clock.now = 191.0
    assert len(tracker.forget_fired()) == 2
    assert not tracker.is_fired("remarked")
    # forgotten: a very late fragment starts a new group instead of being stale
    assert tracker.add(ROOT.child("a", 0)).outcome is Outcome.ACCEPTED


def test_child_is_a_plain_value() -> None:
    child = Child((0,), Kind.DATA, "v", ROOT.child("a", 0))
    assert child.ok
    assert child.reason is None
    assert child == Child((0,), Kind.DATA, "v", ROOT.child("a", 0))


def test_wide_split_completes_in_one_pass() -> None:
    tracker = Tracker(0, 1)
    n = 20_000
    for i in range(n - 1, 0, -1):
        assert tracker.add(ROOT.child("a", i), i).completed is None
    tracker.add(ROOT.end_marker("a", n))
    completed = tracker.add(ROOT.child("a", 0), 0).completed
    assert completed is not None
    assert [c.value for c in completed.children] == list(range(n))
