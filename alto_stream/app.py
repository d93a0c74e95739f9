"""Applications: a registry of stages and the topology inferred from it (no I/O).

An app is a set of plain async functions, each registered as one stage kind and
naming the stage it reads from::

    app = App("docs", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def paragraphs(doc):
        for text in doc["text"].split("\\n\\n"):
            yield {"text": text}

    @app.map(source=paragraphs, schema="alto.Text")
    async def shout(paragraph):
        return {"text": paragraph["text"].upper()}

    @app.aggregate(source=shout, closes=paragraphs, schema="alto.Text")
    async def document(children):
        return {"text": "\\n\\n".join(c.value["text"] for c in children if c.ok)}

From that, :meth:`App.topology` infers the depth of every stage's records, the
level each aggregate closes, how records bound for an aggregate are keyed, and
every topic and consumer group name. The decorators return the function
unchanged, so handlers stay plain functions that tests can call directly.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from alto_stream.errors import ConfigError, TopologyError
from alto_stream.topics import TopicSpec

__all__ = ["INPUT", "App", "Stage", "StageKind", "StagePlan", "Topology"]

INPUT = "input"
"""The name of an app's input (the root queries): use ``app.input`` as a source."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
F = TypeVar("F", bound=Callable[..., Any])
SourceRef = Callable[..., Any] | str


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

    def plan(self, stage: str) -> StagePlan:
        """The plan of ``stage``; :class:`ConfigError` listing the stages when unknown."""
        try:
            return self.stages[stage]
        except KeyError:
            raise ConfigError(
                f"app {self.app!r} has no stage {stage!r}; its stages are: "
                f"{', '.join(self.stages) or '(none)'}"
            ) from None

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

        A changelog always gets its aggregator's input partition count (co-partitioning).
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
                    base, partitions=specs[plan.input_topic].partitions, cleanup_policy="compact"
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


@dataclass
class App:
    """An application: named stages wired into a dataflow, run by workers.

    ``input_schema`` is the Avro schema of the queries pushed on its input topic.
    """

    name: str
    input_schema: str = "alto.Query"
    _stages: dict[str, Stage] = field(default_factory=dict, init=False, repr=False)
    _by_handler: dict[int, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"app name {self.name!r} must start with a letter and hold only letters, "
                "digits, '_' and '-' (it becomes part of topic names)"
            )

    @property
    def input(self) -> str:
        """The app's input, to use as the ``source`` of the first stages."""
        return INPUT

    @property
    def stages(self) -> Mapping[str, Stage]:
        """The registered stages by name, in registration order."""
        return dict(self._stages)

    # -- registration -------------------------------------------------------

    def map(self, *, source: SourceRef, schema: str, **options: Any) -> Callable[[F], F]:
        """Register ``async def f(value) -> value | None``: one record in, one out.

        Returning None drops the record: a skip marker flows on in its place. A
        plain ``def`` works too, for work that never waits (parsing, cutting
        text): the worker then runs it in its own loop, with no task per record.
        """
        return self._register(StageKind.MAP, source, schema, options)

    def split(self, *, source: SourceRef, schema: str, **options: Any) -> Callable[[F], F]:
        """Register an async generator ``async def f(value)`` yielding children.

        Each child flows downstream as soon as it is yielded; the count follows in
        an end marker when the generator finishes (zero children included). A
        plain ``async def`` returning a list also works: its size is known, so the
        last child carries the count and no end marker is needed. Plain ``def``
        generators and functions work the same way (see :meth:`map`).
        """
        return self._register(StageKind.SPLIT, source, schema, options)

    def batch(
        self,
        *,
        source: SourceRef,
        schema: str,
        size: int = 32,
        wait: float = 0.02,
        **options: Any,
    ) -> Callable[[F], F]:
        """Register ``async def f(values: list) -> list``: one result per record, in order.

        The worker gathers up to ``size`` records, waiting at most ``wait`` seconds.
        """
        options.update(batch_size=size, batch_wait=wait)
        return self._register(StageKind.BATCH, source, schema, options)

    def aggregate(
        self,
        *,
        source: SourceRef,
        closes: SourceRef,
        schema: str,
        timeout: float | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Register ``async def f(children) -> value | None`` reassembling a split.

        ``closes`` names the split whose children are put back together (or
        ``app.input`` for the whole query). ``children`` are
        :class:`~alto_stream.aggregate.Child` objects in index order, markers
        included. After ``timeout`` seconds without completing, the ancestor is
        closed anyway with explicit timeout markers for what is missing.
        """
        options.update(closes=self._resolve(closes), timeout=timeout)
        return self._register(StageKind.AGGREGATE, source, schema, options)

    def _register(
        self, kind: StageKind, source: SourceRef, schema: str, options: dict[str, Any]
    ) -> Callable[[F], F]:
        resolved = self._resolve(source)

        def decorator(func: F) -> F:
            name = str(options.pop("name", func.__name__))
            self._check_new(name, func, kind)
            try:
                stage = Stage(
                    name=name, kind=kind, handler=func, source=resolved, schema=schema, **options
                )
            except TypeError as exc:
                raise ConfigError(f"stage {name!r}: {exc}") from exc
            self._stages[name] = stage
            self._by_handler[id(func)] = name
            return func

        return decorator

    def _check_new(self, name: str, func: Callable[..., Any], kind: StageKind) -> None:
        if not _NAME.match(name) or name == INPUT:
            raise ConfigError(f"stage name {name!r} is not allowed (reserved or not a name)")
        if name in self._stages:
            raise ConfigError(f"app {self.name!r} already has a stage named {name!r}")
        if not callable(func):
            raise ConfigError(f"stage {name!r}: the handler must be a function, got {func!r}")
        is_generator = inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func)
        if is_generator and kind is not StageKind.SPLIT:
            raise ConfigError(f"stage {name!r}: only a split may be a generator")

    def _resolve(self, ref: SourceRef) -> str:
        if isinstance(ref, str):
            return ref
        try:
            return self._by_handler[id(ref)]
        except KeyError:
            raise TopologyError(
                f"{getattr(ref, '__name__', ref)!r} is not a stage of app {self.name!r}: "
                "register it with a decorator before naming it as a source"
            ) from None

    # -- topology -----------------------------------------------------------

    def topology(self, *, partitions: int = 4) -> Topology:
        """Infer and check the app's topology; :class:`TopologyError` if it does not fit."""
        del partitions  # partition counts come from topics/<app>.toml, see alto_stream.topics
        order = self._ordered()
        depth_out: dict[str, int] = {INPUT: 0}
        schema_out: dict[str, str] = {INPUT: self.input_schema}
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
            )
            for s in order
        }
        outputs = tuple(s.name for s in order if not downstream[s.name])
        if not plans:
            raise TopologyError(f"app {self.name!r} has no stages: register at least one")
        return Topology(
            app=self.name,
            input_topic=self._topic(INPUT),
            input_schema=self.input_schema,
            input_key_depth=key_depth.get(INPUT),
            stages=plans,
            outputs=outputs,
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
