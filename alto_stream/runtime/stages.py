"""What each kind of stage does with one decoded record (map, split, batch, aggregate).

A :class:`Processor` turns an input :class:`~alto_stream.message.Envelope` into
output envelopes, handed one by one to an ``emit`` callback so that a split's
children flow on as soon as they exist. It knows nothing about Kafka: the
worker wires ``emit`` to a producer (or to a transaction's buffer). A batch
stage's micro-batches are gathered by :class:`~alto_stream.runtime.batching.Batcher`
(re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import Any

from alto_stream.aggregate import DEFAULT_MAX_COUNT, AggregateContext, Child, Completed
from alto_stream.ancestry import Ancestry, Kind, new_attempt
from alto_stream.app import StageKind, StagePlan
from alto_stream.app_schemas import as_record
from alto_stream.errors import RetriableError, StageError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.batching import Batcher

__all__ = ["Batcher", "Emit", "Processor", "escaped"]

log = logging.getLogger(__name__)

Emit = Callable[[Envelope], Awaitable[None]]


def escaped(exc: BaseException) -> StageError | None:
    """A handler's ``BaseException`` that must not end the worker, as a record failure.

    A handler that raises ``CancelledError`` itself (not cancelled: its task was
    not asked to stop), or calls ``sys.exit()``, failed on its record: before,
    the first swallowed the record silently (never done, so its partition's
    commit stuck behind it) and the second wedged the worker. None for a real
    cancellation (a stop cuts the record short; its next owner runs it).
    """
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is None or task.cancelling():
            return None
    elif not isinstance(exc, SystemExit):  # KeyboardInterrupt: a stop, in-process
        return None
    failure = StageError(
        f"the handler raised {type(exc).__name__}({str(exc)!r}): a handler fails its record "
        "by raising an Exception; it cannot stop the worker"
    )
    failure.__cause__ = exc
    return failure


def _not_awaited(stage: str, value: Any) -> None:
    """Refuse a result that is an awaitable: a call the handler forgot to await."""
    if inspect.iscoroutine(value):
        value.close()  # else Python warns "coroutine ... was never awaited" at collection
    raise StageError(
        f"stage {stage!r} returned {type(value).__name__} {getattr(value, '__qualname__', '')}"
        ": a call not awaited; fix: `return await ...` in an async def handler",
        stage=stage,
    )


_TURN_EVERY = 256
"""Children a split emits between turns of the event loop. Writing one takes the
worker ~0.1-0.3 ms and need not wait, so a split of 100,000 children (a list, or
a generator that never awaits) held the loop for 30 s and more: no heartbeat, and
its partitions moved to another worker."""


class Processor:
    """Runs one stage's handler on decoded records, with retries and markers."""

    def __init__(
        self,
        plan: StagePlan,
        codec: MessageCodec | None = None,
        *,
        settled: Callable[[], bool] | None = None,
        max_children: int = DEFAULT_MAX_COUNT,
    ) -> None:
        """``settled``: whether the worker holds no other record (see :class:`Batcher`).

        ``max_children``: the most children a split may make, the most the aggregate
        closing it takes (``WorkerOptions.max_children``): past it the split fails.
        """
        self.plan = plan
        self.max_children = max_children
        self.stage = plan.stage
        # Encodes a split's context, decodes an aggregate's (only those need it).
        self._codec = codec
        self._inline = plan.stage.inline
        self._async = plan.stage.is_async
        self._batcher = (
            Batcher(self.stage, self.call, settled) if self.stage.kind is StageKind.BATCH else None
        )
        # An aggregate's timeout is how long it waits for children, not for its handler.
        self._call_timeout = None if plan.stage.kind is StageKind.AGGREGATE else plan.stage.timeout

    @contextlib.asynccontextmanager
    async def _timed(self) -> AsyncIterator[None]:
        """Bound a call (a split: its whole run, its writes included) by the stage's ``timeout``.

        Only the time-out's own expiry is reported as such: a ``TimeoutError`` the
        handler raised itself (its own ``wait_for``, a client's) passes as it is.
        """
        limit = self._call_timeout
        assert limit is not None
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                yield
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise TimeoutError(
                f"stage {self.stage.name!r}: the handler took longer than its timeout of "
                f"{limit:g} s (cancelled)"
            ) from exc

    async def process(self, envelope: Envelope, emit: Emit) -> None:
        """Process one data record, emitting its outputs. Raises on handler failure."""
        kind = self.stage.kind
        if kind is StageKind.MAP:
            await self._emit_result(envelope.ancestry, await self.call(envelope.value), emit)
        elif kind is StageKind.BATCH:
            assert self._batcher is not None
            await self._emit_result(
                envelope.ancestry, await self._batcher.submit(envelope.value), emit
            )
        elif kind is StageKind.SPLIT:
            await self._split(envelope, emit)
        else:
            raise StageError(f"aggregate {self.stage.name!r} takes fire(), not process()")

    async def fire(self, completed: Completed, emit: Emit) -> None:
        """Run an aggregate's handler on a completed ancestor and emit its result."""
        children = [_user_child(child) for child in completed.children]
        if self.stage.context_param is None:
            result = await self.call(children)
        else:
            result = await self.call(children, self.context(completed))
        await self._emit_result(completed.ancestor, result, emit)

    def context(self, completed: Completed) -> AggregateContext:
        """The context of a completed ancestor: the value its split's end marker carried."""
        schema = value = None
        end = completed.context
        raw = end.context if isinstance(end, Envelope) else None
        if raw is not None:
            schema, value = self._message_codec().decode_context(raw)
        return AggregateContext(
            completed.ancestor, value, schema, completed.attempt, completed.timed_out
        )

    def _message_codec(self) -> MessageCodec:
        if self._codec is None:
            self._codec = MessageCodec()
        return self._codec

    async def _emit_result(self, ancestry: Ancestry, result: Any, emit: Emit) -> None:
        await emit(self.result_envelope(ancestry, result))

    def result_envelope(self, ancestry: Ancestry, result: Any) -> Envelope:
        """What a map or batch stage emits for a handler's result: data, or SKIP for None."""
        if result is None:
            return self._marker(ancestry, Kind.SKIP, f"dropped by stage {self.stage.name}")
        return self._data(ancestry, result)

    async def _split(self, envelope: Envelope, emit: Emit) -> None:
        handler = self.stage.handler
        if inspect.isasyncgenfunction(handler) or inspect.isgeneratorfunction(handler):
            retry = 0
            while True:  # a retry re-runs the whole split, as a new attempt
                try:
                    if self._call_timeout is None:
                        await self._stream_children(envelope, emit)
                    else:
                        async with self._timed():
                            await self._stream_children(envelope, emit)
                    return
                except Exception as exc:
                    if not self._retriable(exc, retry):
                        raise
                    await self._back_off(exc, retry)
                    retry += 1
        parent = envelope.ancestry
        attempt = new_attempt()
        children = await self._children(await self.call(envelope.value))
        if len(children) > self.max_children:
            raise self._too_many(len(children), "returned")
        for index, child in enumerate(children):
            self._check_child(child, index, "returned")
        # The count rides on the last child, unless the end marker must carry a context.
        ends = not children or self.plan.sends_context
        last = -1 if ends else len(children) - 1
        for index, child in enumerate(children):
            count = len(children) if index == last else None
            await emit(self._data(parent.child(attempt, index, count), child))
            if index % _TURN_EVERY == _TURN_EVERY - 1:
                await asyncio.sleep(0)  # see _TURN_EVERY
        if ends:
            await emit(self._end(envelope, attempt, len(children)))

    async def _stream_children(self, envelope: Envelope, emit: Emit) -> None:
        """One run of a generator split: each child emitted as it comes, then the end marker.

        Each run is a new attempt: children a failed run emitted are never mixed
        with a retry's (the aggregate takes the attempt that completes).
        """
        parent, attempt, emitted = envelope.ancestry, new_attempt(), 0
        handler = self.stage.handler
        if inspect.isasyncgenfunction(handler):
            async for child in handler(envelope.value):
                await self._stream_child(parent, attempt, emitted, child, emit)
                emitted += 1
        else:
            for child in handler(envelope.value):
                await self._stream_child(parent, attempt, emitted, child, emit)
                emitted += 1
        await emit(self._end(envelope, attempt, emitted))

    async def _stream_child(
        self, parent: Ancestry, attempt: str, index: int, child: Any, emit: Emit
    ) -> None:
        """Emit child ``index`` of a generator split (its count comes with the end marker)."""
        if index >= self.max_children:
            raise self._too_many(index + 1, "yielded")
        self._check_child(child, index, "yielded")
        await emit(self._data(parent.child(attempt, index), child))
        if index % _TURN_EVERY == _TURN_EVERY - 1:
            await asyncio.sleep(0)  # see _TURN_EVERY

    def _too_many(self, count: int, how: str) -> StageError:
        """The error of a split that made more children than its aggregate takes."""
        more = f"{count:,}" if how == "returned" else f"more than {self.max_children:,}"
        return StageError(
            f"split {self.stage.name!r} {how} {more} children, past the limit of "
            f"{self.max_children:,} an aggregate takes (WorkerOptions.max_children, "
            "ALTO_MAX_CHILDREN): split in two levels (a split of splits, each closed by "
            "an aggregate), or raise the limit on every worker of the app",
            stage=self.stage.name,
        )

    async def _children(self, children: Any) -> list[Any] | tuple[Any, ...]:
        """A split handler's result as a sequence: a list or tuple, or any iterable's items.

        A generator object (a ``def`` returning ``(... for ...)``) is listed, an
        async iterator too; a record (dict), text or bytes is refused: not children.
        """
        if isinstance(children, list | tuple):
            return children
        if isinstance(children, AsyncIterable):
            return [child async for child in children]
        if isinstance(children, Iterable) and not isinstance(children, str | bytes | Mapping):
            return list(children)
        raise StageError(
            f"split {self.stage.name!r} returned {type(children).__name__}: return a list of "
            "children (or any iterable of them), or yield them (a def or async def generator)",
            stage=self.stage.name,
        )

    def _check_child(self, child: Any, index: int, how: str) -> None:
        """:class:`StageError` for a child that is no value (None: a marker, not a child)."""
        if child is None:
            verb = "yield" if how == "yielded" else "return"
            raise StageError(
                f"split {self.stage.name!r} {how} None as child {index}: {verb} a dict "
                f"(a value of {self.stage.schema}) for each child",
                stage=self.stage.name,
            )

    def _end(self, parent: Envelope, attempt: str, count: int) -> Envelope:
        """The end marker of one split of ``parent``, with its value when an aggregate wants it."""
        context = None
        if self.plan.sends_context and parent.value is not None and parent.schema is not None:
            context = self._message_codec().encode_context(parent.schema, parent.value)
        return Envelope(
            parent.ancestry.end_marker(attempt, count), None, None, self.stage.name, context
        )

    async def call(self, argument: Any, context: AggregateContext | None = None) -> Any:
        """The handler's result for ``argument``, retrying retriable failures with backoff.

        ``context`` goes to an aggregate handler that takes one.
        """
        stage = self.stage
        try:
            if self._inline:  # a plain function without retries: nothing to await
                return (
                    stage.handler(argument) if context is None else self._invoke(argument, context)
                )
            for retry in range(stage.retries + 1):
                try:
                    result = (
                        stage.handler(argument)
                        if context is None
                        else self._invoke(argument, context)
                    )
                    if not self._async:
                        return result
                    if self._call_timeout is None:
                        return await result
                    async with self._timed():
                        return await result
                except Exception as exc:
                    if not self._retriable(exc, retry):
                        raise
                    await self._back_off(exc, retry)
        except (asyncio.CancelledError, SystemExit) as exc:  # see escaped()
            failure = escaped(exc)
            if failure is None:
                raise
            raise failure from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _retriable(self, exc: Exception, retry: int) -> bool:
        """Whether ``exc``, raised by try number ``retry`` (from 0), is tried again."""
        stage = self.stage
        if retry >= stage.retries:
            return False
        return isinstance(exc, (RetriableError, *stage.retry_on))

    async def _back_off(self, exc: Exception, retry: int) -> None:
        """Wait before the next try: ``retry_backoff``, doubled for each next one."""
        stage = self.stage
        delay = stage.retry_backoff * 2**retry
        log.warning(
            "stage %s: retriable failure (%s), retry %d/%d in %.2fs",
            stage.name,
            exc,
            retry + 1,
            stage.retries,
            delay,
        )
        await asyncio.sleep(delay)

    def _invoke(self, argument: Any, context: AggregateContext) -> Any:
        if self.stage.context_param == "keyword":
            return self.stage.handler(argument, context=context)
        return self.stage.handler(argument, context)

    def _data(self, ancestry: Ancestry, value: Any) -> Envelope:
        if type(value) is not dict:  # a dataclass instance becomes the dict Avro writes
            if inspect.isawaitable(value):
                _not_awaited(self.stage.name, value)
            value = as_record(value)
        return Envelope(ancestry, value, self.stage.schema, self.stage.name)

    def _marker(self, ancestry: Ancestry, kind: Kind, reason: str | None) -> Envelope:
        if kind is not Kind.END:
            ancestry = ancestry.marker(kind, reason or kind.value.lower())
        return Envelope(ancestry, None, None, self.stage.name)

    def error_marker(self, ancestry: Ancestry, reason: str) -> Envelope:
        """The error marker that flows on in place of a record that failed here."""
        return self._marker(ancestry, Kind.ERROR, reason)

    async def stop(self) -> None:
        """Stop background work (the batcher)."""
        if self._batcher is not None:
            await self._batcher.stop()


def _user_child(child: Child) -> Child:
    """The child as the aggregate function sees it: the payload, not the envelope."""
    value = child.value.value if isinstance(child.value, Envelope) else child.value
    return dataclasses.replace(child, value=value)
