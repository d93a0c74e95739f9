"""An app's topology as a graph for the page: nodes, edges, levels and a layout.

A pure function of the :class:`~alto_stream.app.Topology` (no I/O). Nodes are
the input topic, every stage and every output topic; a flow edge carries the
topic between two nodes, and a ``closes`` edge joins an aggregate to the split
whose level it closes. The layout puts a node's column at its distance from
the input and its row at the depth of the records it writes, so splits step
down and aggregates step back up: the levels are visible at a glance.

>>> from workers.textflow import app
>>> g = topology_graph(app.topology())
>>> [n["id"] for n in g["nodes"]][:3]
['input', 'paragraphs', 'sentences']
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from alto_stream.app import INPUT, StageKind, StagePlan, Topology

__all__ = ["output_node", "topology_graph"]


def output_node(stage: str) -> str:
    """The node id of the output topic written by ``stage``."""
    return f"out:{stage}"


def topology_graph(topology: Topology) -> dict[str, Any]:
    """The JSON the page draws the graph from (see the module docstring)."""
    column: dict[str, int] = {INPUT: 0}
    row: dict[str, int] = {INPUT: 0}
    nodes: list[dict[str, Any]] = [
        {
            "id": INPUT,
            "kind": "input",
            "label": topology.input_topic,
            "topic": topology.input_topic,
            "schema": topology.input_schema,
            "depth": 0,
        }
    ]
    edges: list[dict[str, Any]] = []
    for plan in topology.stages.values():
        stage = plan.stage
        column[plan.name] = column[stage.source] + 1
        row[plan.name] = plan.depth_out
        nodes.append(_stage_node(plan, output=plan.name in topology.outputs))
        edges.append(
            {"from": stage.source, "to": plan.name, "kind": "flow", "topic": plan.input_topic}
        )
        if stage.kind is StageKind.AGGREGATE:
            edges.append({"from": plan.name, "to": stage.closes or INPUT, "kind": "closes"})
    for name in topology.outputs:
        plan = topology.stages[name]
        node = output_node(name)
        column[node] = column[name] + 1
        row[node] = plan.depth_out
        nodes.append(
            {
                "id": node,
                "kind": "output",
                "label": plan.output_topic,
                "topic": plan.output_topic,
                "schema": plan.stage.schema,
                "depth": plan.depth_out,
            }
        )
        edges.append({"from": name, "to": node, "kind": "flow", "topic": plan.output_topic})
    _place(nodes, column, row)
    return {
        "app": topology.app,
        "nodes": nodes,
        "edges": edges,
        "depths": max(n["depth"] for n in nodes) + 1,
        "columns": max(column.values()) + 1,
        "rows": max(n["y"] for n in nodes) + 1,
    }


def _stage_node(plan: StagePlan, *, output: bool) -> dict[str, Any]:
    """A stage as a node: its kind, levels, topics and group."""
    stage = plan.stage
    return {
        "id": plan.name,
        "kind": stage.kind.value,
        "label": plan.name,
        "depth_in": plan.depth_in,
        "depth": plan.depth_out,
        "schema": stage.schema,
        "input_topic": plan.input_topic,
        "topic": plan.output_topic,
        "dead_letter_topic": plan.dead_letter_topic,
        "changelog_topic": plan.changelog_topic,
        "group": plan.group,
        "closes": (stage.closes or INPUT) if stage.kind is StageKind.AGGREGATE else None,
        "output": output,
    }


def _place(nodes: list[dict[str, Any]], column: dict[str, int], row: dict[str, int]) -> None:
    """Set ``x`` (column) and ``y`` (row) on every node; branches sharing a cell move down.

    Rows are counted per depth band: a band is as tall as its most crowded column.
    """
    lanes: dict[tuple[int, int], int] = defaultdict(int)
    lane_of: dict[str, int] = {}
    for node in nodes:
        cell = (column[node["id"]], row[node["id"]])
        lane_of[node["id"]] = lanes[cell]
        lanes[cell] += 1
    height: dict[int, int] = defaultdict(lambda: 1)
    for (_, depth), count in lanes.items():
        height[depth] = max(height[depth], count)
    top = {}
    y = 0
    for depth in range(max(row.values()) + 1):
        top[depth] = y
        y += height[depth]
    for node in nodes:
        node["x"] = column[node["id"]]
        node["y"] = top[row[node["id"]]] + lane_of[node["id"]]
