"""Draw an app's topology: stages, the topics between them, split and aggregate levels.

Pure functions of a :class:`~alto_stream.app.Topology` (no I/O), in three forms:

- ``text``: one line per stage, indented by the depth of its records, with the
  topic it reads and writes and, for an aggregate, the split it closes;
- ``mermaid``: a ``flowchart`` for Markdown (GitHub renders it);
- ``dot``: Graphviz.

>>> from workers.textflow import app
>>> print(render(app.topology(), "text").splitlines()[1])
input  [alto.Text]  -> textflow.input
"""

from __future__ import annotations

from collections.abc import Callable

from alto_stream.app import INPUT, StageKind, StagePlan, Topology
from alto_stream.errors import ConfigError

__all__ = ["FORMATS", "render", "render_dot", "render_mermaid", "render_text"]

_ARROW = {
    StageKind.MAP: "map",
    StageKind.SPLIT: "split",
    StageKind.BATCH: "batch",
    StageKind.AGGREGATE: "aggregate",
}


def _describe(plan: StagePlan) -> str:
    """The stage's kind with its level: ``split (depth 1 -> 2)``, ``aggregate closes x``."""
    stage = plan.stage
    kind = _ARROW[stage.kind]
    if stage.kind is StageKind.SPLIT:
        return f"{kind} depth {plan.depth_in}->{plan.depth_out}"
    if stage.kind is StageKind.AGGREGATE:
        closes = stage.closes or INPUT
        return f"{kind} closes {closes}, depth {plan.depth_in}->{plan.depth_out}"
    if stage.kind is StageKind.BATCH:
        return f"{kind} of {stage.batch_size} (wait {stage.batch_wait:g} s), depth {plan.depth_in}"
    return f"{kind} depth {plan.depth_in}"


def render_text(topology: Topology) -> str:
    """One line per stage in data-flow order, indented by its output depth."""
    lines = [f"app {topology.app}"]
    lines.append(f"input  [{topology.input_schema}]  -> {topology.input_topic}")
    for plan in topology.stages.values():
        pad = "  " * (plan.depth_out + 1)
        tail = "  (output)" if plan.name in topology.outputs else ""
        lines.append(
            f"{pad}{plan.name}: {_describe(plan)}  [{plan.input_topic} -> {plan.output_topic}]"
            f"  [{plan.stage.schema}]{tail}"
        )
    return "\n".join(lines)


def _node_id(name: str) -> str:
    return "n_" + name.replace("-", "_")


def render_mermaid(topology: Topology) -> str:
    """A Mermaid ``flowchart TD``: splits as trapezoids, aggregates as inverted ones.

    Edges carry the topic name; a dotted edge joins each aggregate to the split it closes.
    """
    lines = [
        "flowchart TD",
        f'  {_node_id(INPUT)}(["{topology.input_topic}<br/>{topology.input_schema}"])',
    ]
    shapes = {
        StageKind.MAP: ('["', '"]'),
        StageKind.BATCH: ('[["', '"]]'),
        StageKind.SPLIT: ('[/"', '"\\]'),
        StageKind.AGGREGATE: ('[\\"', '"/]'),
    }
    for plan in topology.stages.values():
        left, right = shapes[plan.stage.kind]
        lines.append(f"  {_node_id(plan.name)}{left}{plan.name}<br/>{_describe(plan)}{right}")
    for plan in topology.stages.values():
        lines.append(
            f"  {_node_id(plan.stage.source)} -->|{plan.input_topic}| {_node_id(plan.name)}"
        )
    for plan in topology.stages.values():
        if plan.stage.kind is StageKind.AGGREGATE:
            closes = plan.stage.closes or INPUT
            lines.append(f"  {_node_id(plan.name)} -.closes.-> {_node_id(closes)}")
    for name in topology.outputs:
        out = f"out_{_node_id(name)}"
        lines.append(f'  {out}(["{topology.stages[name].output_topic}"])')
        lines.append(f"  {_node_id(name)} --> {out}")
    return "\n".join(lines)


def render_dot(topology: Topology) -> str:
    """A Graphviz digraph: boxes for maps and batches, trapezia for splits and aggregates."""
    shapes = {
        StageKind.MAP: "box",
        StageKind.BATCH: "box3d",
        StageKind.SPLIT: "trapezium",
        StageKind.AGGREGATE: "invtrapezium",
    }
    lines = [
        f'digraph "{topology.app}" {{',
        "  rankdir=TB;",
        "  node [fontname=Helvetica];",
        f'  "{INPUT}" [shape=ellipse, label="{topology.input_topic}\\n{topology.input_schema}"];',
    ]
    for plan in topology.stages.values():
        lines.append(
            f'  "{plan.name}" [shape={shapes[plan.stage.kind]}, '
            f'label="{plan.name}\\n{_describe(plan)}"];'
        )
    for plan in topology.stages.values():
        lines.append(f'  "{plan.stage.source}" -> "{plan.name}" [label="{plan.input_topic}"];')
        if plan.stage.kind is StageKind.AGGREGATE:
            closes = plan.stage.closes or INPUT
            lines.append(f'  "{plan.name}" -> "{closes}" [style=dotted, label="closes"];')
    for name in topology.outputs:
        topic = topology.stages[name].output_topic
        lines.append(f'  "{topic}" [shape=ellipse];')
        lines.append(f'  "{name}" -> "{topic}";')
    lines.append("}")
    return "\n".join(lines)


FORMATS: dict[str, Callable[[Topology], str]] = {
    "text": render_text,
    "mermaid": render_mermaid,
    "dot": render_dot,
}
"""Format name -> renderer."""


def render(topology: Topology, fmt: str = "text") -> str:
    """``topology`` drawn in ``fmt`` (text, mermaid or dot); :class:`ConfigError` otherwise."""
    try:
        renderer = FORMATS[fmt]
    except KeyError:
        raise ConfigError(
            f"unknown graph format {fmt!r}: choose one of {', '.join(FORMATS)}"
        ) from None
    return renderer(topology)
