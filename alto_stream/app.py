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
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from alto_stream.app_schemas import SchemaSource, build_registry, is_schema_type, schema_name
from alto_stream.codec import Codec, SchemaRegistry
from alto_stream.errors import ConfigError, SchemaError, TopologyError
from alto_stream.message import MessageCodec
from alto_stream.topics import TopicSpec

__all__ = ["INPUT", "App", "Stage", "StageKind", "StagePlan", "Topology"]

INPUT = "input"
"""The name of an app's input (the root queries): use ``app.input`` as a source."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
F = TypeVar("F", bound=Callable[..., Any])
SourceRef = Callable[..., Any] | str
SchemaRef = str | type
"""A schema by name (``"alto.Text"``), or a dataclass or TypedDict to derive it from."""
RetryOn = type[BaseException] | tuple[type[BaseException], ...]
ContextParam = Literal["positional", "keyword"]


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
    context_param: ContextParam | None = None
    """For an aggregate: how its handler takes the context (None: it takes only children)."""

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

    ``input_schema`` is the Avro schema of the queries pushed on its input
    topic. ``schemas`` brings the app's own schemas, on top of the built-in
    ones: folders of ``.avsc`` files or single files (relative paths are read
    from the folder of the module that makes the app), schema dicts, and
    dataclasses or TypedDicts to derive schemas from (see
    :mod:`alto_stream.app_schemas`). :meth:`topology` checks that every schema
    a stage names is known.
    """

    name: str
    input_schema: SchemaRef = "alto.Query"
    schemas: Sequence[SchemaSource] = ()
    _stages: dict[str, Stage] = field(default_factory=dict, init=False, repr=False)
    _by_handler: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _types: list[type] = field(default_factory=list, init=False, repr=False)
    _home: Path = field(default_factory=Path.cwd, init=False, repr=False)
    _registry: SchemaRegistry | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"app name {self.name!r} must start with a letter and hold only letters, "
                "digits, '_' and '-' (it becomes part of topic names)"
            )
        self._home = _caller_folder()
        self.input_schema = self._schema_name(self.input_schema)

    @property
    def input(self) -> str:
        """The app's input, to use as the ``source`` of the first stages."""
        return INPUT

    @property
    def stages(self) -> Mapping[str, Stage]:
        """The registered stages by name, in registration order."""
        return dict(self._stages)

    @property
    def registry(self) -> SchemaRegistry:
        """Every schema the app knows: the built-in ones and its own (read once, then kept).

        :class:`SchemaError` when one of the app's schemas cannot be read.
        """
        if self._registry is None:
            self._registry = build_registry([*self.schemas, *self._types], self._home)
        return self._registry

    # -- registration -------------------------------------------------------

    def map(
        self,
        *,
        source: SourceRef,
        schema: SchemaRef,
        name: str | None = None,
        accepts: SchemaRef | None = None,
        max_in_flight: int = 64,
        retries: int = 0,
        retry_backoff: float = 0.1,
        retry_on: RetryOn = (),
    ) -> Callable[[F], F]:
        """Register ``async def f(value) -> value | None``: one record in, one out.

        Returning None drops the record: a skip marker flows on in its place. A
        plain ``def`` works too, for work that never waits (parsing, cutting
        text): the worker then runs it in its own loop, with no task per record.

        Args:
            source: the stage (its handler, or its name) or ``app.input`` it reads.
            schema: the Avro schema of its outputs: a name, or a dataclass or
                TypedDict to derive one from.
            name: the stage's name (default: the handler's name); it names topics.
            accepts: the schema it expects from its source (checked by :meth:`topology`).
            max_in_flight: how many records one worker runs at once.
            retries: how many times a retriable failure is tried again.
            retry_backoff: seconds before the first retry (doubled for each next one).
            retry_on: exception types that are retriable besides
                :class:`~alto_stream.errors.RetriableError`.
        """
        return self._register(
            StageKind.MAP, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on,
        )  # fmt: skip

    def split(
        self,
        *,
        source: SourceRef,
        schema: SchemaRef,
        name: str | None = None,
        accepts: SchemaRef | None = None,
        max_in_flight: int = 64,
        retries: int = 0,
        retry_backoff: float = 0.1,
        retry_on: RetryOn = (),
    ) -> Callable[[F], F]:
        """Register an async generator ``async def f(value)`` yielding children.

        Each child flows downstream as soon as it is yielded; the count follows in
        an end marker when the generator finishes (zero children included). A
        plain ``async def`` returning a list also works: its size is known, so the
        last child carries the count and no end marker is needed. Plain ``def``
        generators and functions work the same way (see :meth:`map`). The
        parameters are those of :meth:`map`; a retry re-runs the whole split.
        """
        return self._register(
            StageKind.SPLIT, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on,
        )  # fmt: skip

    def batch(
        self,
        *,
        source: SourceRef,
        schema: SchemaRef,
        size: int = 32,
        wait: float = 0.02,
        name: str | None = None,
        accepts: SchemaRef | None = None,
        max_in_flight: int = 64,
        retries: int = 0,
        retry_backoff: float = 0.1,
        retry_on: RetryOn = (),
    ) -> Callable[[F], F]:
        """Register ``async def f(values: list) -> list``: one result per record, in order.

        The worker gathers up to ``size`` records, waiting at most ``wait``
        seconds; a worker keeps at least ``2 * size`` records in flight. The
        other parameters are those of :meth:`map`; a retry re-runs the batch.
        """
        if size < 1 or wait < 0:
            raise ConfigError(f"batch: size must be >= 1 and wait >= 0, got {size} and {wait}")
        return self._register(
            StageKind.BATCH, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on, batch_size=size, batch_wait=wait,
        )  # fmt: skip

    def aggregate(
        self,
        *,
        source: SourceRef,
        closes: SourceRef,
        schema: SchemaRef,
        timeout: float | None = None,
        name: str | None = None,
        accepts: SchemaRef | None = None,
        max_in_flight: int = 64,
        retries: int = 0,
        retry_backoff: float = 0.1,
        retry_on: RetryOn = (),
    ) -> Callable[[F], F]:
        """Register ``async def f(children[, context]) -> value | None`` reassembling a split.

        ``closes`` names the split whose children are put back together (or
        ``app.input`` for the whole query). ``children`` are
        :class:`~alto_stream.aggregate.Child` objects in index order, markers
        included. A handler with a second parameter (or a keyword-only
        ``context``) also gets an :class:`~alto_stream.aggregate.AggregateContext`:
        the ancestor's id and the value the closed split received (sent along
        with the split's end marker). After ``timeout`` seconds without
        completing, the ancestor is closed anyway with explicit timeout markers
        for what is missing. The other parameters are those of :meth:`map`.
        """
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"aggregate: timeout must be > 0 seconds or None, got {timeout}")
        return self._register(
            StageKind.AGGREGATE, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on, closes=self._resolve(closes), timeout=timeout,
        )  # fmt: skip

    def _register(
        self,
        kind: StageKind,
        source: SourceRef,
        schema: SchemaRef,
        name: str | None,
        accepts: SchemaRef | None,
        max_in_flight: int,
        retries: int,
        retry_backoff: float,
        retry_on: RetryOn,
        **extra: Any,
    ) -> Callable[[F], F]:
        resolved = self._resolve(source)
        if max_in_flight < 1 or retries < 0 or retry_backoff < 0:
            raise ConfigError(
                f"{kind.value}: max_in_flight must be >= 1, retries and retry_backoff >= 0; "
                f"got {max_in_flight}, {retries}, {retry_backoff}"
            )
        options = {
            "schema": self._schema_name(schema),
            "accepts": None if accepts is None else self._schema_name(accepts),
            "max_in_flight": max_in_flight,
            "retries": retries,
            "retry_backoff": retry_backoff,
            "retry_on": _exception_types(retry_on),
            **extra,
        }

        def decorator(func: F) -> F:
            stage_name = name if name is not None else str(func.__name__)
            self._check_new(stage_name, func, kind)
            context = _context_param(stage_name, func) if kind is StageKind.AGGREGATE else None
            stage = Stage(
                name=stage_name,
                kind=kind,
                handler=func,
                source=resolved,
                context_param=context,
                **options,
            )
            self._stages[stage_name] = stage
            self._by_handler[id(func)] = stage_name
            return func

        return decorator

    def _schema_name(self, schema: SchemaRef) -> str:
        """The name of ``schema``; a type is remembered, to derive its schema from."""
        if isinstance(schema, str):
            return schema
        if not is_schema_type(schema):
            raise ConfigError(
                f"app {self.name!r}: schema {schema!r} is neither a schema name nor a "
                "dataclass or TypedDict"
            )
        if schema not in self._types:
            self._types.append(schema)
            self._registry = None
        return schema_name(schema)

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
        registry = self._check_schemas(order)
        input_schema = self._schema_name(self.input_schema)
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
        outputs = tuple(s.name for s in order if not downstream[s.name])
        if not plans:
            raise TopologyError(f"app {self.name!r} has no stages: register at least one")
        return Topology(
            app=self.name,
            input_topic=self._topic(INPUT),
            input_schema=input_schema,
            input_key_depth=key_depth.get(INPUT),
            stages=plans,
            outputs=outputs,
            registry=registry,
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

    def _check_schemas(self, order: list[Stage]) -> SchemaRegistry:
        """The app's registry, once every schema named by the app is found in it."""
        try:
            registry = self.registry
        except SchemaError as exc:
            raise TopologyError(f"app {self.name!r}: its schemas cannot be read: {exc}") from exc
        named = [("the app's input", self._schema_name(self.input_schema))]
        for stage in order:
            named.append((f"stage {stage.name!r}", stage.schema))
            if stage.accepts is not None:
                named.append((f"stage {stage.name!r} (accepts)", stage.accepts))
        known = set(registry.names())
        for where, schema in named:
            if schema not in known:
                raise TopologyError(
                    f"app {self.name!r}: {where} names schema {schema!r}, which is unknown; "
                    f"known: {', '.join(sorted(known))}; fix: correct the name, or bring the "
                    f"schema with App(..., schemas=[...]) (an .avsc folder or file, a dict, "
                    "a dataclass or a TypedDict)"
                )
        return registry

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


def _caller_folder() -> Path:
    """The folder of the module that made the app (the current folder when there is none)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # type: ignore[assignment]
    found = frame.f_globals.get("__file__") if frame is not None else None
    return Path(found).resolve().parent if isinstance(found, str) else Path.cwd()


def _exception_types(retry_on: RetryOn) -> tuple[type[BaseException], ...]:
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigError(f"retry_on takes exception types, got {kind!r}")
    return types


def _context_param(stage: str, handler: Callable[..., Any]) -> ContextParam | None:
    """How an aggregate's handler takes a context: a 2nd positional parameter, or ``context=``."""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise ConfigError(
            f"aggregate {stage!r}: the handler takes no argument; expected "
            "f(children) or f(children, context)"
        )
    if any(p.name == "context" and p.kind is p.KEYWORD_ONLY for p in params):
        return "keyword"
    if len(positional) >= 2 and (
        positional[1].default is inspect.Parameter.empty or positional[1].name == "context"
    ):
        required = [p for p in positional[2:] if p.default is inspect.Parameter.empty]
        if required:
            raise ConfigError(
                f"aggregate {stage!r}: the handler needs {len(positional)} arguments; "
                "expected f(children) or f(children, context)"
            )
        return "positional"
    return None
