"""An app's topology: its stages, and what is inferred from them (no I/O).

:func:`infer` takes the registered :class:`Stage` objects of an app and works
out the depth of every stage's records, the level (and the split) each
aggregate closes, how records bound for an aggregate are keyed, which splits
send their value to an aggregate that takes a context, and every topic and
consumer group name. :class:`~alto_stream.app.App` registers the stages and
calls it.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from alto_stream.codec import Codec, SchemaRegistry
from alto_stream.errors import ConfigError, TopologyError
from alto_stream.message import MessageCodec
from alto_stream.topics import CHANGELOG_CONFIGS, TopicSpec

__all__ = ["INPUT", "ContextParam", "Stage", "StageKind", "StagePlan", "Topology", "infer"]

INPUT = "input"
"""The name of an app's input (the root queries): use ``app.input`` as a source."""

ContextParam = Literal["positional", "keyword"]
"""How an aggregate's handler takes its context: a second positional parameter, or a keyword."""


class StageKind(enum.Enum):
    """The four kinds of stage."""

    MAP = "map"
    SPLIT = "split"
    BATCH = "batch"
    AGGREGATE = "aggregate"


@dataclass(frozen=True)
class Stage:
    """One registered stage: its handler and how it runs."""

    name: str
    kind: StageKind
    handler: Callable[..., Any]
    source: str
    schema: str
    accepts: str | None = None
    closes: str | None = None
    max_in_flight: int = 64
    batch_size: int = 32
    batch_wait: float = 0.02
    retries: int = 0
    retry_backoff: float = 0.1
    retry_on: tuple[type[BaseException], ...] = ()
    timeout: float | None = None
    """An aggregate's: seconds it waits for an ancestor's children; another stage's: seconds
    one call of its handler may take (a split's: its whole run)."""
    context_param: ContextParam | None = None
    """For an aggregate: how its handler takes the context (None: it takes only children)."""
    priority: bool | None = None
    """Whether its model calls carry the query's priority (None: as the app says)."""
    commit_early: bool = False
    """A split's, in the transactional mode: its children commit with each round while its
    record runs, not once it is done."""

    @property
    def is_async(self) -> bool:
        """True when the handler is an ``async def`` (a coroutine or async generator)."""
        return inspect.iscoroutinefunction(self.handler) or inspect.isasyncgenfunction(self.handler)

    @property
    def inline(self) -> bool:
        """True when a worker runs each record in its own loop, without a task per record.

        That is a plain-function handler (it cannot wait, so records gain nothing
        from running side by side) with no retries to sleep between, in any
        stage but a batch (which must gather records while they wait).
        """
        return not self.is_async and self.retries == 0 and self.kind is not StageKind.BATCH


@dataclass(frozen=True)
class StagePlan:
    """What the topology says about one stage: depths, topics, keying."""

    stage: Stage
    input_topic: str
    output_topic: str
    group: str
    dead_letter_topic: str
    changelog_topic: str | None
    depth_in: int
    depth_out: int
    input_schema: str
    key_depth: int | None
    """Records this stage emits are keyed by their ancestor at this depth (None: spread)."""
    aggregate_depth: int | None = None
    """For an aggregate: the depth of the ancestors it reassembles."""
    downstream: tuple[str, ...] = ()
    closes_split: str | None = None
    """For an aggregate: the split whose children it puts back together."""
    sends_context: bool = False
    """For a split: its end markers carry the value it split (an aggregate takes a context)."""

    @property
    def name(self) -> str:
        """The stage's name."""
        return self.stage.name


@dataclass(frozen=True)
class Topology:
    """The inferred plan of an app: every stage's topics, depths and routing."""

    app: str
    input_topic: str
    input_schema: str
    input_key_depth: int | None
    stages: Mapping[str, StagePlan]
    outputs: tuple[str, ...]
    registry: SchemaRegistry | None = field(default=None, compare=False, repr=False)
    """Every schema the app knows (built-in and its own): give it to codecs."""

    def plan(self, stage: str) -> StagePlan:
        """The plan of ``stage``; :class:`ConfigError` listing the stages when unknown."""
        try:
            return self.stages[stage]
        except KeyError:
            raise ConfigError(
                f"app {self.app!r} has no stage {stage!r}; its stages are: "
                f"{', '.join(self.stages) or '(none)'}"
            ) from None

    def codec(self) -> MessageCodec:
        """A new message codec that knows the app's schemas (the built-in ones and its own)."""
        return MessageCodec(Codec(self.registry)) if self.registry is not None else MessageCodec()

    def output_topics(self) -> dict[str, str]:
        """Output stage name -> topic, for the stages whose records leave the app."""
        return {name: self.stages[name].output_topic for name in self.outputs}

    def topic_specs(
        self,
        *,
        partitions: int = 4,
        replication: int = 1,
        overrides: Mapping[str, TopicSpec] | None = None,
    ) -> list[TopicSpec]:
        """Every topic of the app as a spec: ``overrides`` (by name) win over the defaults.

        A changelog always gets its aggregator's input partition count (co-partitioning),
        and :data:`~alto_stream.topics.CHANGELOG_CONFIGS` under its own configs.
        """
        overrides = overrides or {}

        def spec(name: str, schema: str | None, policy: str = "delete") -> TopicSpec:
            return overrides.get(name) or TopicSpec(
                name=name,
                partitions=partitions,
                replication=replication,
                cleanup_policy=policy,
                value_schema=schema,
                configs={},
            )

        specs = {self.input_topic: spec(self.input_topic, self.input_schema)}
        for plan in self.stages.values():
            specs[plan.output_topic] = spec(plan.output_topic, plan.stage.schema)
            specs[plan.dead_letter_topic] = spec(plan.dead_letter_topic, "alto.DeadLetter")
        for plan in self.stages.values():
            if plan.changelog_topic:
                base = spec(plan.changelog_topic, None, "compact")
                specs[plan.changelog_topic] = dataclasses.replace(
                    base,
                    partitions=specs[plan.input_topic].partitions,
                    cleanup_policy="compact",
                    configs={**CHANGELOG_CONFIGS, **base.configs},
                )
        return list(specs.values())

    def topic_names(self) -> list[str]:
        """Every topic the app uses: input, outputs, dead letters, changelogs."""
        names = [self.input_topic]
        for plan in self.stages.values():
            names += [plan.output_topic, plan.dead_letter_topic]
            if plan.changelog_topic:
                names.append(plan.changelog_topic)
        return names


def infer(
    app: str, input_schema: str, stages: Mapping[str, Stage], registry: SchemaRegistry
) -> Topology:
    """The checked topology of the stages of ``app``; :class:`TopologyError` if they do not fit."""
    return _Inference(app, input_schema, dict(stages), registry).infer()


@dataclass
class _Inference:
    """Works out one app's topology from its stages (see :func:`infer`)."""

    name: str
    input_schema: str
    _stages: dict[str, Stage]
    registry: SchemaRegistry

    def infer(self) -> Topology:
        """The topology; :class:`TopologyError` if the stages do not fit together."""
        order = self._ordered()
        input_schema = self.input_schema
        self._check_names(order)
        depth_out: dict[str, int] = {INPUT: 0}
        schema_out: dict[str, str] = {INPUT: input_schema}
        agg_depth: dict[str, int] = {}
        for stage in order:
            depth_in = depth_out[stage.source]
            self._check_schema(stage, schema_out[stage.source])
            if stage.kind is StageKind.SPLIT:
                depth_out[stage.name] = depth_in + 1
            elif stage.kind is StageKind.AGGREGATE:
                agg_depth[stage.name] = self._closing_depth(stage, depth_in, depth_out)
                depth_out[stage.name] = agg_depth[stage.name]
            else:
                depth_out[stage.name] = depth_in
            schema_out[stage.name] = stage.schema
        key_depth = self._key_depths(order, agg_depth)
        downstream = {name: tuple(s.name for s in order if s.source == name) for name in depth_out}
        closed = {
            s.name: self._closed_split(s, agg_depth[s.name], depth_out) for s in _aggregates(order)
        }
        wanted = {closed[s.name] for s in _aggregates(order) if s.context_param is not None}
        plans = {
            s.name: StagePlan(
                stage=s,
                input_topic=self._topic(s.source),
                output_topic=self._topic(s.name),
                group=f"{self.name}.{s.name}",
                dead_letter_topic=f"{self.name}.{s.name}.dlq",
                changelog_topic=(
                    f"{self.name}.{s.name}.changelog" if s.kind is StageKind.AGGREGATE else None
                ),
                depth_in=depth_out[s.source],
                depth_out=depth_out[s.name],
                input_schema=schema_out[s.source],
                key_depth=key_depth.get(s.name),
                aggregate_depth=agg_depth.get(s.name),
                downstream=downstream[s.name],
                closes_split=closed.get(s.name),
                sends_context=s.name in wanted,
            )
            for s in order
        }
        if not plans:
            raise TopologyError(f"app {self.name!r} has no stages: register at least one")
        outputs = tuple(s.name for s in order if not downstream[s.name])
        self._check_outputs(outputs, depth_out)
        return Topology(
            app=self.name,
            input_topic=self._topic(INPUT),
            input_schema=input_schema,
            input_key_depth=key_depth.get(INPUT),
            stages=plans,
            outputs=outputs,
            registry=self.registry,
        )

    def _topic(self, stage: str) -> str:
        return f"{self.name}.{stage}"

    def _ordered(self) -> list[Stage]:
        """Stages sorted so that every source comes before its readers; finds cycles."""
        done: dict[str, Stage] = {}
        visiting: list[str] = []

        def visit(stage: Stage) -> None:
            if stage.name in done:
                return
            if stage.name in visiting:
                cycle = " -> ".join([*visiting[visiting.index(stage.name) :], stage.name])
                raise TopologyError(f"app {self.name!r} has a cycle: {cycle}")
            visiting.append(stage.name)
            if stage.source != INPUT:
                if stage.source not in self._stages:
                    raise TopologyError(
                        f"stage {stage.name!r} reads from {stage.source!r}, which is not a stage "
                        f"of app {self.name!r} (known: {', '.join(self._stages)})"
                    )
                visit(self._stages[stage.source])
            visiting.pop()
            done[stage.name] = stage

        for stage in self._stages.values():
            visit(stage)
        return list(done.values())

    def _check_names(self, order: list[Stage]) -> None:
        """Fail unless the input and every stage's schemas are in the registry."""
        named = [("the app's input", self.input_schema)]
        for stage in order:
            named.append((f"stage {stage.name!r}", stage.schema))
            if stage.accepts is not None:
                named.append((f"stage {stage.name!r} (accepts)", stage.accepts))
        known = set(self.registry.names())
        for where, schema in named:
            if schema not in known:
                raise TopologyError(
                    f"app {self.name!r}: {where} names schema {schema!r}, which is unknown; "
                    f"known: {', '.join(sorted(known))}; fix: correct the name, or bring the "
                    f"schema with App(..., schemas=[...]) (an .avsc folder or file, a dict, "
                    "a dataclass or a TypedDict)"
                )

    def _check_outputs(self, outputs: tuple[str, ...], depth_out: dict[str, int]) -> None:
        """Fail unless exactly one output stage is at the root's depth.

        A query's final result is a record of the root's depth on an output topic,
        and a query shows one (:mod:`alto_stream.client`): with none, no query
        would ever finish; with two, the second's result would never show. An
        output stage inside a split (below the root) is fine: its records are
        the query's partial results.
        """
        finals = [name for name in outputs if depth_out[name] == 0]
        if len(finals) > 1:
            raise TopologyError(
                f"app {self.name!r} has {len(finals)} output stages at the root's depth (read "
                f"by no other stage): {', '.join(finals)}; a query has one final result, from "
                "one of them, so the others' results would never show; fix: make all but one "
                "the source of another stage (a chain), or remove those not needed"
            )
        if not finals:
            output = outputs[0]
            depth = depth_out[output]
            nearest = next(
                n
                for n in self._upstream(output)
                if self._stages[n].kind is StageKind.SPLIT and depth_out[n] == depth
            )
            raise TopologyError(
                f"app {self.name!r} ends on stage {output!r}, whose records are at depth "
                f"{depth}, fragments of their query (split {nearest!r} is not closed), so no "
                "query would ever get its final result (one record at the root's depth); "
                "fix: end the app on an aggregate that puts them back together, "
                f"@app.aggregate(source={output}, closes={nearest}, schema=...) (or "
                "closes=app.input: the whole query)"
            )

    def _closed_split(self, stage: Stage, depth: int, depth_out: dict[str, int]) -> str:
        """The split that made the frames an aggregate at ``depth`` closes (nearest upstream)."""
        for name in self._upstream(stage.source):
            if self._stages[name].kind is StageKind.SPLIT and depth_out[name] == depth + 1:
                return name
        raise AssertionError(f"no split opens depth {depth + 1} above {stage.name}")

    def _check_schema(self, stage: Stage, upstream: str) -> None:
        if stage.accepts is not None and stage.accepts != upstream:
            raise TopologyError(
                f"stage {stage.name!r} accepts {stage.accepts!r} but its source "
                f"{stage.source!r} emits {upstream!r}: convert with a map stage in between"
            )

    def _upstream(self, name: str) -> list[str]:
        chain = []
        while name != INPUT:
            chain.append(name)
            name = self._stages[name].source
        return chain

    def _closing_depth(self, stage: Stage, depth_in: int, depth_out: dict[str, int]) -> int:
        """The depth of the ancestors an aggregate reassembles (one above the closed split)."""
        closes = stage.closes or INPUT
        chain = self._upstream(stage.source)
        if closes == INPUT:
            target = 0
        else:
            closed = self._stages.get(closes)
            if closed is None or closed.kind is not StageKind.SPLIT:
                raise TopologyError(
                    f"aggregate {stage.name!r} closes {closes!r}, which is not a split stage"
                )
            if closes not in chain:
                raise TopologyError(
                    f"aggregate {stage.name!r} closes {closes!r}, which is not upstream of it "
                    f"(its sources: {' <- '.join(chain) or 'input'})"
                )
            target = depth_out[closes] - 1
            between = chain[: chain.index(closes)]
            if any(depth_out[name] <= target for name in between):
                raise TopologyError(
                    f"aggregate {stage.name!r} closes {closes!r}, but an aggregate in between "
                    "already closed that split"
                )
        if depth_in <= target:
            raise TopologyError(
                f"aggregate {stage.name!r} has nothing to close: its input is at depth "
                f"{depth_in}, no split is open above depth {target}"
            )
        return target

    def _key_depths(self, order: list[Stage], agg_depth: dict[str, int]) -> dict[str, int]:
        """For each topic's producer: the ancestor depth its records are keyed by."""
        keys: dict[str, int] = {}
        for stage in order:
            if stage.kind is not StageKind.AGGREGATE:
                continue
            wanted = agg_depth[stage.name]
            had = keys.setdefault(stage.source, wanted)
            if had != wanted:
                raise TopologyError(
                    f"topic of {stage.source!r} feeds aggregates that close different levels "
                    f"(depths {had} and {wanted}): put a map stage before one of them"
                )
        return keys


def _aggregates(order: list[Stage]) -> list[Stage]:
    """The aggregates of ``order``."""
    return [s for s in order if s.kind is StageKind.AGGREGATE]
