"""``<system>+gate``: a system whose LLM calls go through ``alto-stream gate``.

The gate (``alto_stream.components.llm.gate_server``) is started as its own
process in front of the run's engine for the system's lifetime, with
``BenchConfig.gate_slots`` slots (the requests the engine serves at once:
``llama_cpp.server`` 1), and the system is given the gate's URL instead of the
engine's. Its requests carry the query's arrival time as the priority (the
config's ``priority``), so the oldest query's waiting call goes next.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from alto_stream.broker.nodes import free_ports
from alto_stream.errors import AltoError
from benchmarks.systems.base import BenchConfig, System
from benchmarks.systems.process import start, stop

__all__ = ["SUFFIX", "GatedSystem"]

SUFFIX = "+gate"


class GatedSystem:
    """``inner`` (made from the config with the gate's URL) behind a gate process."""

    def __init__(
        self, name: str, config: BenchConfig, make: Callable[[BenchConfig], System]
    ) -> None:
        if not config.llm_url:
            raise AltoError(f"{name}: the gate needs the engine's URL (llm_url)")
        self.name = name
        self.upstream = config.llm_url
        self.slots = config.gate_slots
        self.port = free_ports()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = Path(config.workdir) / f"gate-{self.port}.log"
        self.inner = make(dataclasses.replace(config, llm_url=self.url))
        self.admitted = self.inner.admitted  # the same dict: the inner system fills it
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The gate's command line."""
        gate = [sys.executable, "-m", "alto_stream.cli", "gate", self.upstream]
        return [*gate, "--slots", str(self.slots), "--port", str(self.port)]

    async def start(self) -> None:
        """Start the gate, wait until it answers, then start the inner system."""
        probe = self.url.removesuffix("/v1") + "/stats"
        self._process = await start(
            self.command(), probe=probe, what="the gate", log=self.log, within=60.0
        )
        await self.inner.start()

    async def run(self, query_id: str, question: str, on_partial: Callable[[], None]) -> str:
        """The inner system's answer."""
        return await self.inner.run(query_id, question, on_partial)

    async def close(self) -> None:
        """Close the inner system, then stop the gate."""
        try:
            await self.inner.close()
        finally:
            await stop(self._process)
