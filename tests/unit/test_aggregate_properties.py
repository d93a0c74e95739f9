"""Property tests of the completeness tracker over random nested-split trees.

The generator (:func:`make_forest`, :func:`emit`) and the sequential reference
(:func:`reference`) are plain functions driven by a ``pick(lo, hi)`` callable,
so that hypothesis and a seeded ``random.Random`` (the Kafka integration test)
share them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alto_stream.aggregate import Child, Completed, Outcome, Tracker
from alto_stream.ancestry import Ancestry, Kind

Pick = Callable[[int, int], int]
Record = tuple[Ancestry, Any]

# -- the generator --------------------------------------------------------------


@dataclass
class GenAttempt:
    """One processing of a split: the children it made, and how it told their number.

    ``tell`` is "end" (an end marker), "last" (a count on the last child's frame)
    or "none" (a crashed attempt: no count ever). Children in ``missing`` are
    never emitted (lost with a crash). Only a complete attempt can win.
    """

    name: str
    children: list[GenNode]
    tell: str
    missing: frozenset[int] = frozenset()


@dataclass
class GenNode:
    """A node of a generated tree: a data leaf, a skip/error marker, or a split."""

    ancestry: Ancestry  # the node's data ancestry (a marker node emits its marker form)
    kind: Kind  # DATA for leaves and splits, SKIP or ERROR for markers
    attempts: list[GenAttempt] = field(default_factory=list)  # non-empty for a split
    value: str | None = None  # a data leaf's payload

    @property
    def record(self) -> Record:
        """The one record of a leaf or marker node."""
        if self.kind is Kind.DATA:
            return (self.ancestry, self.value)
        return (self.ancestry.marker(self.kind, f"{self.kind.name.lower()} {self.value}"), None)

    def walk(self) -> Iterator[GenNode]:
        """This node and every node below it, in every attempt (emitted or not)."""
        yield self
        for attempt in self.attempts:
            for child in attempt.children:
                yield from child.walk()


@dataclass
class _Budget:
    nodes: int
    names: Iterator[int] = field(default_factory=itertools.count)


def make_forest(
    pick: Pick, roots: int, leaf_depth: int, *, max_fanout: int = 5, max_nodes: int = 400
) -> list[GenNode]:
    """``roots`` random trees whose data leaves all lie at ``leaf_depth``.

    Each split has one complete attempt and maybe extra ones (a re-run making a
    different number of children), complete or crashed; leaves and sub-trees are
    sometimes skip/error markers; zero-child splits happen.
    """
    budget = _Budget(max_nodes)
    forest = []
    for r in range(roots):
        root = Ancestry.root(f"q{r}", query_time=float(r))
        forest.append(_split(pick, root, 0, leaf_depth, budget, max_fanout))
    return forest


def _node(
    pick: Pick, ancestry: Ancestry, level: int, leaf_depth: int, budget: _Budget, max_fanout: int
) -> GenNode:
    budget.nodes -= 1
    label = "/".join(str(i) for i in ancestry.index)
    roll = pick(0, 19)
    marker = Kind.SKIP if roll == 0 else Kind.ERROR if roll == 1 else None
    if level == leaf_depth or (marker is not None and pick(0, 1) == 0):
        return GenNode(ancestry, marker or Kind.DATA, value=f"{ancestry.query_id}:{label}")
    return _split(pick, ancestry, level, leaf_depth, budget, max_fanout)


def _split(
    pick: Pick, ancestry: Ancestry, level: int, leaf_depth: int, budget: _Budget, max_fanout: int
) -> GenNode:
    node = GenNode(ancestry, Kind.DATA)
    for extra in range(1 + (pick(0, 5) == 0) + (pick(0, 11) == 0)):
        name = f"t{next(budget.names)}"
        fanout = pick(0, max_fanout if budget.nodes > 0 else 0)
        tell = "end" if fanout == 0 or pick(0, 1) == 0 else "last"
        missing: frozenset[int] = frozenset()
        if extra and pick(0, 1) == 0:  # a crashed re-run
            if fanout == 0 or pick(0, 1) == 0:
                tell = "none"
            else:
                missing = frozenset({pick(0, fanout - 1)})
        children = []
        for i in range(fanout):
            count = fanout if tell == "last" and i == fanout - 1 else None
            child = ancestry.child(name, i, count=count)
            children.append(_node(pick, child, level + 1, leaf_depth, budget, max_fanout))
        node.attempts.append(GenAttempt(name, children, tell, missing))
    return node


def emit(node: GenNode) -> list[Record]:
    """Every record the stages upstream emit for this node's sub-tree, in a natural order."""
    if not node.attempts:
        return [node.record]
    out: list[Record] = []
    for attempt in node.attempts:
        for i, child in enumerate(attempt.children):
            if i not in attempt.missing:
                out.extend(emit(child))
        if attempt.tell == "end":
            out.append((node.ancestry.end_marker(attempt.name, len(attempt.children)), None))
    return out


# -- the sequential reference ---------------------------------------------------


def reference(node: GenNode, first: dict[Ancestry, int]) -> tuple[float, list[Record]]:
    """When ``node``'s sub-tree becomes complete, records arriving first at ``first[record]``,
    and its leaves: recursively those of the attempt that completes first (inf if none does).
    """
    if not node.attempts:
        return first.get(node.record[0], math.inf), [node.record]
    best: tuple[float, list[Record]] = (math.inf, [])
    for attempt in node.attempts:
        done, leaves = _told(node, attempt, first), []
        for i, child in enumerate(attempt.children):
            when, below = reference(child, first) if i not in attempt.missing else (math.inf, [])
            done = max(done, when)
            leaves.extend(below)
        if done < best[0]:
            best = (done, leaves)
    return best


def _told(node: GenNode, attempt: GenAttempt, first: dict[Ancestry, int]) -> float:
    """When the attempt's count is known: its end marker, or any record under its last child."""
    n = len(attempt.children)
    if attempt.tell == "end":
        return first.get(node.ancestry.end_marker(attempt.name, n), math.inf)
    if attempt.tell == "none" or n - 1 in attempt.missing:
        return math.inf
    return min((first.get(a, math.inf) for a, _ in emit(attempt.children[-1])), default=math.inf)


def first_arrivals(order: list[Record]) -> dict[Ancestry, int]:
    """The position of each record's first arrival."""
    first: dict[Ancestry, int] = {}
    for position, (ancestry, _) in enumerate(order):
        first.setdefault(ancestry, position)
    return first


def ancestors_at(forest: list[GenNode], depth: int) -> list[GenNode]:
    """Every split node at ``depth`` (what a tracker of that depth reassembles)."""
    return [n for root in forest for n in root.walk() if n.attempts and n.ancestry.depth == depth]


def assert_children(completed: Completed, leaves: list[Record], depth: int) -> None:
    """``completed`` holds exactly ``leaves``, in order, with the right index, kind and value."""
    got = [(c.ancestry, c.kind, c.index, c.value) for c in completed.children]
    want = [(a, a.kind, a.index[depth:], v) for a, v in leaves]
    assert got == want


# -- strategies -----------------------------------------------------------------


@st.composite
def forests(draw: st.DrawFn) -> tuple[int, list[GenNode]]:
    """(leaf_depth, trees) with leaf_depth 1-4 and 1-6 roots."""
    leaf_depth = draw(st.integers(1, 4))
    roots = draw(st.integers(1, 6))
    max_fanout = 5 if leaf_depth <= 2 else 3

    def pick(lo: int, hi: int) -> int:
        return draw(st.integers(lo, hi))

    return leaf_depth, make_forest(pick, roots, leaf_depth, max_fanout=max_fanout, max_nodes=120)


@st.composite
def arrivals(draw: st.DrawFn, records: list[Record]) -> list[Record]:
    """Records in some order, a few of them twice."""
    twice = draw(st.lists(st.sampled_from(records), max_size=len(records) // 3)) if records else []
    how = draw(st.sampled_from(["shuffled", "shuffled", "natural", "reversed"]))
    if how == "natural":
        return records + twice
    if how == "reversed":
        return (records + twice)[::-1]
    rng = draw(st.randoms(use_true_random=False))
    order = records + twice
    rng.shuffle(order)
    return order


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- properties -----------------------------------------------------------------


@PROPERTY
@given(generated=forests(), data=st.data())
def test_fires_exactly_once_never_early_with_the_sequential_result(
    generated: tuple[int, list[GenNode]], data: st.DataObject
) -> None:
    leaf_depth, forest = generated
    records = [record for root in forest for record in emit(root)]
    order = data.draw(arrivals(records))
    first = first_arrivals(order)
    _describe(forest, records, order, first)
    for depth in range(leaf_depth):
        tracker = Tracker(depth, leaf_depth)
        fires: dict[str, tuple[int, Completed]] = {}
        for position, (ancestry, value) in enumerate(order):
            result = tracker.add(ancestry, value)
            assert result.outcome is _expected_outcome(ancestry, depth, position, first, fires)
            if result.completed is not None:
                assert result.ancestor_id not in fires, "fired twice"
                assert result.ancestor_id is not None
                fires[result.ancestor_id] = (position, result.completed)
        waiting = set()
        for node in ancestors_at(forest, depth):
            when, leaves = reference(node, first)
            if when == math.inf:
                assert node.ancestry.id not in fires
                if any(a in first for a, _ in emit(node)):
                    waiting.add(node.ancestry.id)
                continue
            position, completed = fires.pop(node.ancestry.id)
            assert position == when, "fired early or late"
            assert completed.ancestor == node.ancestry
            assert not completed.timed_out
            assert_children(completed, leaves, depth)
        assert fires == {}, "fired an ancestor that does not exist"
        assert set(tracker.pending()) == waiting


def _describe(
    forest: list[GenNode], records: list[Record], order: list[Record], first: dict[Ancestry, int]
) -> None:
    """Hypothesis events, to see that the generator covers the interesting cases."""
    event(f"records: {2 ** max(0, len(records) - 1).bit_length()} or fewer")
    event(f"duplicates: {len(order) > len(records)}")
    nodes = [n for root in forest for n in root.walk()]
    event(f"extra attempts: {any(len(n.attempts) > 1 for n in nodes)}")
    won_by_re_run = False
    for node in nodes:
        if len(node.attempts) > 1 and any(a in first for a, _ in emit(node)):
            _, leaves = reference(node, first)
            main = GenNode(node.ancestry, node.kind, node.attempts[:1])
            won_by_re_run |= leaves != reference(main, first)[1]
    event(f"a re-run won somewhere: {won_by_re_run}")
    event(f"markers: {any(n.kind.is_marker for n in nodes)}")
    event(f"zero-child split: {any(len(a.children) == 0 for n in nodes for a in n.attempts)}")


def _expected_outcome(
    ancestry: Ancestry,
    depth: int,
    position: int,
    first: dict[Ancestry, int],
    fires: dict[str, tuple[int, Completed]],
) -> Outcome:
    if ancestry.depth < depth:
        return Outcome.FORWARD
    if ancestry.depth == depth and ancestry.kind is Kind.END:
        return Outcome.FORWARD
    if ancestry.depth == depth and ancestry.kind.is_marker:
        # The ancestor's own marker ends it: passed on once, its copies are stale.
        return Outcome.FORWARD if first[ancestry] == position else Outcome.STALE
    if ancestry.ancestor_id(depth) in fires:
        return Outcome.STALE
    return Outcome.ACCEPTED if first[ancestry] == position else Outcome.DUPLICATE


@PROPERTY
@given(generated=forests(), data=st.data())
def test_expire_fires_every_pending_ancestor_once_with_what_arrived(
    generated: tuple[int, list[GenNode]], data: st.DataObject
) -> None:
    leaf_depth, forest = generated
    records = [record for root in forest for record in emit(root)]
    order = data.draw(arrivals(records))
    cut = data.draw(st.integers(0, len(order)))
    depth = data.draw(st.integers(0, leaf_depth - 1))
    now = [0.0]
    tracker = Tracker(depth, leaf_depth, clock=lambda: now[0])
    fed: dict[Ancestry, Any] = {}
    fired_ids = set()
    for ancestry, value in order[:cut]:
        result = tracker.add(ancestry, value)
        fed.setdefault(ancestry, value)
        if result.completed is not None:
            fired_ids.add(result.ancestor_id)
    pending = tracker.pending()
    now[0] = 10.0
    assert tracker.expire(10.0) == []
    now[0] = 10.5
    expired = tracker.expire(10.0)
    assert [c.ancestor.id for c in expired] == pending
    for completed in expired:
        assert completed.timed_out
        _assert_salvage(completed, fed, depth)
    assert len(tracker) == 0
    assert tracker.expire(0.0) == []
    for ancestry, value in order[cut:]:
        outcome = tracker.add(ancestry, value).outcome
        if ancestry.depth > depth and ancestry.ancestor_id(depth) in set(pending) | fired_ids:
            assert outcome is Outcome.STALE


def _assert_salvage(completed: Completed, fed: dict[Ancestry, Any], depth: int) -> None:
    children = completed.children
    indices = [c.index for c in children]
    assert indices == sorted(set(indices)), "children out of index order"
    for a, b in itertools.pairwise(indices):
        assert b[: len(a)] != a, "a leaf and a node below it both reported"
    assert any(c.kind is Kind.TIMEOUT for c in children), "an incomplete ancestor needs a gap"
    for child in children:
        assert child.ancestry.ancestor_id(depth) == completed.ancestor.id
        assert child.ancestry.index[depth:] == child.index
        if child.kind is Kind.TIMEOUT:
            assert child.reason == "timed out after 10 s"
            assert child.ancestry not in fed
        else:
            assert fed[child.ancestry] == child.value if child.ok else child.value is None


@settings(max_examples=100, deadline=None)
@given(generated=forests(), data=st.data())
def test_results_do_not_depend_on_the_order(
    generated: tuple[int, list[GenNode]], data: st.DataObject
) -> None:
    """With no extra attempts racing, every order gives the same children."""
    leaf_depth, forest = generated
    for node in (n for root in forest for n in root.walk()):
        del node.attempts[1:]
    records = [record for root in forest for record in emit(root)]
    results: list[dict[str, tuple[Child, ...]]] = []
    for _ in range(2):
        order = data.draw(arrivals(records))
        tracker = Tracker(leaf_depth - 1, leaf_depth)
        fired = {}
        for ancestry, value in order:
            completed = tracker.add(ancestry, value).completed
            if completed is not None:
                fired[completed.ancestor.id] = completed.children
        results.append(fired)
    assert results[0] == results[1]
    assert len(results[0]) == len(ancestors_at(forest, leaf_depth - 1))
