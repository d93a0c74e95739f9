"""One query's waterfall: every fragment of its ancestry tree as a row of bars over time.

Built from a :class:`~alto_stream.ops.trace.Trace` (what ``alto-stream trace``
shows). A row is a fragment, in tree order (a parent before its children);
each of its hops is a bar from when its input arrived to when the stage wrote
it, so a row reads left to right as the fragment's way through the stages.
Bars on the critical path are flagged, markers (end, skip, error, timeout)
keep their kind and reason, and every bar keeps the decoded record it stands
for. Times are seconds from the trace's start.
"""

from __future__ import annotations

from typing import Any

from alto_stream.ops.trace import Fragment, Hop, Trace

__all__ = ["waterfall"]


def waterfall(trace: Trace) -> dict[str, Any]:
    """The JSON the page draws one query's waterfall from."""
    rows: list[dict[str, Any]] = []
    stages: list[str] = []

    def walk(fragment: Fragment, level: int) -> None:
        if fragment.hops:
            rows.append(
                {
                    "id": fragment.id,
                    "index": list(fragment.index),
                    "level": level,
                    "critical": fragment.critical,
                    "bars": [_bar(trace, hop) for hop in fragment.hops],
                }
            )
        for hop in fragment.hops:
            if hop.stage not in stages:
                stages.append(hop.stage)
        for child in fragment.children:
            walk(child, level + 1)

    walk(trace.root, 0)
    end = max((bar["end"] for row in rows for bar in row["bars"]), default=0.0)
    return {
        "query_id": trace.query_id,
        "replay_of": trace.replay_of,
        "query_time": trace.query_time,
        "start": trace.start,
        "latency": trace.latency,
        "finished": trace.final is not None,
        "span": end,
        "records": len(trace.hops),
        "stages": [t.__dict__ for t in trace.stages()],
        "stage_order": stages,
        "critical_path": [
            {"stage": h.stage, "id": _ancestry(h).id, "end": trace.at(h)}
            for h in trace.critical_path
        ],
        "rows": rows,
    }


def _bar(trace: Trace, hop: Hop) -> dict[str, Any]:
    """One hop as a bar: input arrival to write time (a point when the input is unknown)."""
    end = trace.at(hop)
    start = end if hop.input_time is None else max(hop.input_time - trace.start, 0.0)
    record = hop.item.record
    envelope = hop.item.envelope
    assert envelope is not None
    return {
        "stage": hop.stage,
        "start": min(start, end),
        "end": end,
        "took": hop.took,
        "kind": envelope.kind.value,
        "reason": envelope.ancestry.reason,
        "critical": hop.critical,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "count": envelope.ancestry.path[-1].count if envelope.ancestry.path else None,
        "value": hop.to_dict(trace.start)["value"],
    }


def _ancestry(hop: Hop) -> Any:
    assert hop.item.envelope is not None
    return hop.item.envelope.ancestry
