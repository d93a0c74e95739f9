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

import functools
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alto_stream.app_schemas import SchemaSource, build_registry, is_schema_type, schema_name
from alto_stream.codec import SchemaRegistry
from alto_stream.errors import ConfigError, SchemaError, TopologyError
from alto_stream.topology import (
    INPUT,
    ContextParam,
    Stage,
    StageKind,
    StagePlan,
    Topology,
    infer,
)

__all__ = ["INPUT", "App", "Stage", "StageKind", "StagePlan", "Topology"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_NAME_RULE = "start with a letter and hold only letters, digits, '_' and '-'"
TOPIC_MAX = 249
"""Kafka's longest topic name; an app's longest is ``<app>.<stage>.changelog``."""
_LONGEST_SUFFIX = ".changelog"
F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=Callable[..., Any])
SourceRef = Callable[..., Any] | str
SchemaRef = str | type
"""A schema by name (``"alto.Text"``), or a dataclass or TypedDict to derive it from."""
RetryOn = type[BaseException] | tuple[type[BaseException], ...]


def _keywords_only(method: M) -> M:
    """``method`` (a stage decorator), refusing positional arguments with the fix.

    ``@app.map`` without parentheses hands the handler over positionally, and
    Python's own error ("takes 1 positional argument but 2 were given") does
    not say what to write instead.
    """

    @functools.wraps(method)
    def checked(self: App, *args: Any, **kwargs: Any) -> Any:
        if args:
            what = method.__name__
            if callable(args[0]):
                raise ConfigError(
                    f"@app.{what} needs its options: write @app.{what}(source=..., "
                    f"schema=...) above {getattr(args[0], '__name__', 'the handler')}"
                )
            raise ConfigError(
                f"app.{what} takes keyword arguments only, got {args[0]!r} positionally; "
                f"write @app.{what}(source=..., schema=...)"
            )
        return method(self, **kwargs)

    return checked  # type: ignore[return-value]


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
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"app name {self.name!r} must {_NAME_RULE} (it becomes part of topic names)"
            )
        longest = TOPIC_MAX - len(f".x{_LONGEST_SUFFIX}")
        if len(self.name) > longest:
            raise ConfigError(
                f"app name {self.name[:40]}... is {len(self.name)} characters: at most "
                f"{longest}, for its topics (<app>.<stage>{_LONGEST_SUFFIX}) to fit Kafka's "
                f"{TOPIC_MAX}; fix: a shorter name"
            )
        self._home = _caller_folder()
        self.input_schema = self._schema_name(self.input_schema)
        if self.admission is not None and self.admission < 1:
            raise ConfigError(
                f"app {self.name!r}: admission must be >= 1 queries in flight (or None for "
                f"no limit), got {self.admission}"
            )
        if self.admission_target is not None and self.admission_target <= 0:
            raise ConfigError(
                f"app {self.name!r}: admission_target must be > 0 seconds (or None), got "
                f"{self.admission_target}"
            )

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

    @_keywords_only
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
            retry_backoff, retry_on, priority=priority, timeout=_call_timeout(timeout),
        )  # fmt: skip

    @_keywords_only
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
            retry_backoff, retry_on, priority=priority, timeout=_call_timeout(timeout),
            commit_early=bool(commit_early),
        )  # fmt: skip

    @_keywords_only
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
        if size < 1 or wait < 0:
            raise ConfigError(f"batch: size must be >= 1 and wait >= 0, got {size} and {wait}")
        return self._register(
            StageKind.BATCH, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on, batch_size=size, batch_wait=wait,
            timeout=_call_timeout(timeout),
        )  # fmt: skip

    @_keywords_only
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
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"aggregate: timeout must be > 0 seconds or None, got {timeout}")
        return self._register(
            StageKind.AGGREGATE, source, schema, name, accepts, max_in_flight, retries,
            retry_backoff, retry_on, closes=self._resolve(closes), timeout=timeout,
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
            stage_name = name if name is not None else str(getattr(func, "__name__", ""))
            self._check_new(stage_name, func, kind, named=name is not None)
            if kind is not StageKind.AGGREGATE:
                _check_one_argument(kind, stage_name, func)
            context = _context_param(stage_name, func) if kind is StageKind.AGGREGATE else None
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

    def _check_new(
        self, name: str, func: Callable[..., Any], kind: StageKind, *, named: bool
    ) -> None:
        if name == INPUT:
            raise ConfigError(f"stage name {name!r} is reserved (the app's input); fix: name=...")
        if not _NAME.match(name):
            where = "name=" if named else f"the handler's name (a {kind.value}'s default name)"
            fix = "another name=" if named else f"give one: @app.{kind.value}(..., name='...')"
            raise ConfigError(
                f"stage name {name!r} (from {where}) is not allowed: a stage name must "
                f"{_NAME_RULE} (it becomes part of topic names); fix: {fix}"
            )
        longest = f"{self.name}.{name}{_LONGEST_SUFFIX if kind is StageKind.AGGREGATE else '.dlq'}"
        if len(longest) > TOPIC_MAX:
            raise ConfigError(
                f"stage name {name[:40]}... is too long: its topic {longest[:60]}... would be "
                f"{len(longest)} characters, over Kafka's {TOPIC_MAX}; fix: a shorter name="
            )
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


def _exception_types(retry_on: RetryOn) -> tuple[type[BaseException], ...]:
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigError(f"retry_on takes exception types, got {kind!r}")
    return types


def _call_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be > 0 seconds or None, got {timeout}")
    return timeout


def _check_one_argument(kind: StageKind, stage: str, handler: Callable[..., Any]) -> None:
    """:class:`ConfigError` unless ``handler`` can be called with one positional argument."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return  # a builtin without a signature: its first call will tell
    try:
        signature.bind(None)
    except TypeError:
        takes = "values: the list of values" if kind is StageKind.BATCH else "value"
        shown = signature.replace(return_annotation=inspect.Signature.empty)
        function = getattr(handler, "__name__", "handler")
        raise ConfigError(
            f"{kind.value} {stage!r}: {function}{shown} cannot take one record; expected "
            f"{function}({takes}), one required positional parameter"
        ) from None


def _context_param(stage: str, handler: Callable[..., Any]) -> ContextParam | None:
    """How an aggregate's handler takes a context: a 2nd positional parameter, or ``context=``.

    :class:`ConfigError` naming the stage when the call so chosen cannot bind
    (a keyword-only parameter other than ``context``, a third required one...),
    so that the mistake shows where the decorator is written, not at each query.
    """
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: its first call will tell
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    context: ContextParam | None = None
    if any(p.name == "context" and p.kind is p.KEYWORD_ONLY for p in params):
        context = "keyword"
    elif len(positional) >= 2 and (
        positional[1].default is inspect.Parameter.empty or positional[1].name == "context"
    ):
        context = "positional"
    try:
        if context == "keyword":
            signature.bind(None, context=None)
        elif context == "positional":
            signature.bind(None, None)
        else:
            signature.bind(None)
    except TypeError as exc:
        shown = signature.replace(return_annotation=inspect.Signature.empty)
        function = getattr(handler, "__name__", "handler")
        raise ConfigError(
            f"aggregate {stage!r}: {function}{shown} cannot be called as "
            f"{function}({_AGGREGATE_CALLS[context]}) ({exc}); expected f(children) or "
            "f(children, context), where context may be keyword-only: f(children, *, context)"
        ) from None
    return context


_AGGREGATE_CALLS: dict[ContextParam | None, str] = {
    None: "children",
    "positional": "children, context",
    "keyword": "children, context=context",
}
