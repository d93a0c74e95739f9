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
unchanged, so handlers stay plain functions that tests can call directly. What
they check as they register a stage is in :mod:`alto_stream.app_checks`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alto_stream.app_checks import TOPIC_MAX as TOPIC_MAX
from alto_stream.app_checks import (
    RetryOn,
    call_timeout,
    check_app_name,
    check_new_stage,
    check_one_argument,
    context_param,
    exception_types,
    keywords_only,
    seconds,
    whole,
)
from alto_stream.app_schemas import SchemaSource, build_registry, is_schema_type, schema_name
from alto_stream.codec import SchemaRegistry
from alto_stream.errors import ConfigError, SchemaError, TopologyError
from alto_stream.topology import (
    INPUT,
    Stage,
    StageKind,
    StagePlan,
    Topology,
    infer,
)

__all__ = ["INPUT", "App", "Stage", "StageKind", "StagePlan", "Topology"]

F = TypeVar("F", bound=Callable[..., Any])
SourceRef = Callable[..., Any] | str
SchemaRef = str | type
"""A schema by name (``"alto.Text"``), or a dataclass or TypedDict to derive it from."""


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

    ``admission``: at most this many queries in flight in the app (None: no
    limit); the others wait in the input topic and are admitted oldest first
    (see :mod:`alto_stream.runtime.admission`; a worker's ``--admission``
    overrides it). ``admission_target``: the latency (seconds) wanted for admitted
    queries; the admission limit then is a ceiling under which the first stage
    adapts how many it admits (``--admission-target`` overrides it).
    ``priority``: send each record's query arrival time as the
    priority of its calls to serving engines that honour one (vLLM's
    ``priority`` field; see docs/scheduling.md).
    """

    name: str
    input_schema: SchemaRef = "alto.Query"
    schemas: Sequence[SchemaSource] = ()
    admission: int | None = None
    admission_target: float | None = None
    priority: bool = False
    _stages: dict[str, Stage] = field(default_factory=dict, init=False, repr=False)
    _by_handler: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _types: list[type] = field(default_factory=list, init=False, repr=False)
    _home: Path = field(default_factory=Path.cwd, init=False, repr=False)
    _registry: SchemaRegistry | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_app_name(self.name)
        self._home = _caller_folder()
        if isinstance(self.schemas, str | os.PathLike | Mapping | type):
            self.schemas = (self.schemas,)  # one source (a str is a sequence of letters too)
        self.input_schema = self._schema_name(self.input_schema)
        if self.admission is not None:
            whole(f"app {self.name!r}: admission (queries in flight, or None)", self.admission, 1)
        if self.admission_target is not None:
            seconds(f"app {self.name!r}: admission_target", self.admission_target, positive=True)

    @property
    def input(self) -> str:
        """The app's input, to use as the ``source`` of the first stages."""
        return INPUT

    @property
    def folder(self) -> Path:
        """The folder of the module that made the app: its own ``schemas``, ``topics/``."""
        return self._home

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

    @keywords_only
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
        priority: bool | None = None,
        timeout: float | None = None,
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
            priority: whether the handler's model calls carry the query's priority
                (None: as the app says, ``App(priority=...)``; see docs/scheduling.md).
            timeout: seconds one call of an ``async`` handler may take (a split's:
                its whole run); past it the call is cancelled and fails with
                ``TimeoutError`` (retried when ``retry_on`` names it). None: no limit.
        """
        return self._register(
            StageKind.MAP, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on, priority=priority, timeout=call_timeout(timeout),
        )  # fmt: skip

    @keywords_only
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
        priority: bool | None = None,
        timeout: float | None = None,
        commit_early: bool = False,
    ) -> Callable[[F], F]:
        """Register an async generator ``async def f(value)`` yielding children.

        Each child flows downstream as soon as it is yielded; the count follows in
        an end marker when the generator finishes (zero children included). A
        plain ``async def`` returning a list also works: its size is known, so the
        last child carries the count and no end marker is needed. Plain ``def``
        generators and functions work the same way (see :meth:`map`). The
        parameters are those of :meth:`map`; a retry re-runs the whole split.

        ``commit_early`` matters in the transactional mode only: the children
        then commit with each round (about every second) while the split runs,
        so a long generation's sentences reach the next stage as they come; a
        crash or revocation mid-split leaves the children of the attempt it cut
        short on the topic (aggregates ignore an attempt that never ends).
        Without it they commit once the split's record is done, all at once.
        """
        return self._register(
            StageKind.SPLIT, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on, priority=priority, timeout=call_timeout(timeout),
            commit_early=bool(commit_early),
        )  # fmt: skip

    @keywords_only
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
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Register ``async def f(values: list) -> list``: one result per record, in order.

        The worker gathers up to ``size`` records, waiting at most ``wait``
        seconds; a worker keeps at least ``2 * size`` records in flight. The
        other parameters are those of :meth:`map`; a retry re-runs the batch.
        """
        return self._register(
            StageKind.BATCH, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on, batch_size=whole("batch: size", size, 1),
            batch_wait=seconds("batch: wait", wait), timeout=call_timeout(timeout),
        )  # fmt: skip

    @keywords_only
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
        priority: bool | None = None,
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
        return self._register(
            StageKind.AGGREGATE, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on, closes=self._resolve(closes),
            timeout=call_timeout(timeout, "aggregate: timeout"),
            priority=priority,
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
        priority = extra.get("priority")
        if priority is not None and not isinstance(priority, bool):
            raise ConfigError(
                f"{kind.value}: priority must be True, False or None, got {priority!r}"
            )
        options = {
            "schema": self._schema_name(schema),
            "accepts": None if accepts is None else self._schema_name(accepts),
            "max_in_flight": whole(f"{kind.value}: max_in_flight", max_in_flight, 1),
            "retries": whole(f"{kind.value}: retries", retries, 0),
            "retry_backoff": seconds(f"{kind.value}: retry_backoff", retry_backoff),
            "retry_on": exception_types(retry_on),
            **extra,
        }

        def decorator(func: F) -> F:
            stage_name = name if name is not None else str(getattr(func, "__name__", ""))
            check_new_stage(self.name, self._stages, stage_name, func, kind, named=name is not None)
            if kind is not StageKind.AGGREGATE:
                check_one_argument(kind, stage_name, func)
            context = context_param(stage_name, func) if kind is StageKind.AGGREGATE else None
            stage = Stage(
                name=stage_name,
                kind=kind,
                handler=func,
                source=resolved,
                context_param=context,
                **options,
            )
            if kind is not StageKind.AGGREGATE and stage.timeout is not None and not stage.is_async:
                raise ConfigError(
                    f"stage {stage_name!r}: timeout= needs an async handler (a plain def "
                    "runs in the worker's loop and cannot be cut short); fix: async def"
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

    def _resolve(self, ref: SourceRef) -> str:
        if isinstance(ref, str):
            return ref
        if isinstance(ref, App):
            raise TopologyError(
                f"source=app names the app {ref.name!r} itself; fix: source=app.input for "
                "its queries, or a stage's handler or name"
            )
        try:
            return self._by_handler[id(ref)]
        except KeyError:
            raise TopologyError(
                f"{getattr(ref, '__name__', ref)!r} is not a stage of app {self.name!r}: "
                "register it with a decorator before naming it as a source"
            ) from None

    # -- topology -----------------------------------------------------------

    def topology(self, *, partitions: int = 4) -> Topology:
        """Infer and check the app's topology; :class:`TopologyError` if it does not fit.

        It loads the app's schemas (once) and checks every schema name.
        """
        del partitions  # partition counts come from topics/<app>.toml, see alto_stream.topics
        try:
            registry = self.registry
        except SchemaError as exc:
            raise TopologyError(f"app {self.name!r}: its schemas cannot be read: {exc}") from exc
        return infer(self.name, self._schema_name(self.input_schema), self._stages, registry)


def _caller_folder() -> Path:
    """The folder of the module that made the app (the current folder when there is none)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # type: ignore[assignment]
    found = frame.f_globals.get("__file__") if frame is not None else None
    return Path(found).resolve().parent if isinstance(found, str) else Path.cwd()
