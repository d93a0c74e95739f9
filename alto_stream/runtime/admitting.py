"""A worker's side of admission: the limit it applies, its share, the watch of the app's outputs.

Only a stage that reads the app's input applies a limit (the worker's option,
else the app's). Its share of the limit follows the input partitions this
replica owns; the :class:`~alto_stream.runtime.admission.CompletionWatch` that
frees slots runs as a task beside the worker's loop, and one that fails stops
the worker. The limit itself is in :mod:`alto_stream.runtime.admission`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from alto_stream.app import App, StagePlan, Topology
from alto_stream.message import MessageCodec
from alto_stream.runtime.admission import Admission, CompletionWatch
from alto_stream.runtime.options import WorkerOptions
from alto_stream.runtime.ownership import Ownership
from alto_stream.runtime.scheduling import Runners
from alto_stream.transport import Transport

__all__ = ["Admitting", "admission_for"]

# The name its lines had before they left alto_stream.runtime.worker: logging set up for
# it still works, and the lines read as they did.
log = logging.getLogger("alto_stream.runtime.worker")


def admission_for(
    app: App, plan: StagePlan, topology: Topology, options: WorkerOptions
) -> Admission | None:
    """The app's admission limit, if this stage reads the app's input and one is set."""
    limit = options.admission if options.admission is not None else app.admission
    if not limit or plan.input_topic != topology.input_topic:
        return None
    target = options.admission_target
    if target is None:
        target = app.admission_target
    return Admission(limit, timeout=options.admission_timeout, target=target)


class Admitting:
    """One worker's share of its admission limit, and the watch that frees its slots."""

    def __init__(
        self,
        admission: Admission | None,
        plan: StagePlan,
        topology: Topology,
        ownership: Ownership,
        runners: Runners,
        *,
        transport: Transport,
        codec: MessageCodec,
        lookback: float,
        inline: bool,
        fail: Callable[[Exception], bool],
    ) -> None:
        self.admission = admission
        self.plan = plan
        self.topology = topology
        self._owned = ownership.owned
        self._runners = runners
        self.transport = transport
        self.codec = codec
        self.lookback = lookback
        self._inline = inline
        self._fail = fail
        self._input_partitions = 0  # known once started, with admission

    async def watch_completions(self) -> asyncio.Task[None] | None:
        """With admission: learn this stage's share and start watching the app's outputs."""
        admission = self.admission
        if admission is None:
            return None
        self._input_partitions = await self.transport.partitions(self.plan.input_topic)
        admission.set_share(0, self._input_partitions)  # nothing owned until assigned
        if not self._inline:  # an inline stage's loop starts the next record itself
            admission.on_free = self._runners.wake
        watch = CompletionWatch(
            self.transport,
            self.topology,
            admission,
            self.codec,
            lookback=self.lookback,
        )
        task = asyncio.get_running_loop().create_task(watch.run(), name="admission-watch")
        task.add_done_callback(self._watch_ended)
        return task

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        """A completion watch that fails would hold admission shut: stop the worker instead."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("stage %s: the admission's completion watch failed: %r", self.plan.name, exc)
            self._fail(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))

    def share(self) -> None:
        """This replica's share of the admission limit, by the input partitions it owns."""
        if self.admission is not None:
            self.admission.set_share(len(self._owned), self._input_partitions)
