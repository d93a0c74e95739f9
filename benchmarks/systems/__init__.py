"""The systems ``alto-stream bench APP --system NAME`` compares, and the engine they share.

``NAME`` is ``alto``, ``alto-admit<N>`` (alto with an admission limit of N queries
in flight: ``up --admission N``), ``alto-admit`` (the limit given by ``--admission``)
or ``langgraph-<variant>[-sqlite]`` (variants of
``benchmarks.langgraph.VARIANTS``: graph, fused, functional; ``-sqlite`` turns the
durable checkpointer on). ``<NAME>+gate`` is that system with its LLM calls through
``alto-stream gate`` (benchmarks/systems/gated.py). :class:`EngineProcess` runs the EMULATED engine
(``python -m benchmarks.engine``) on a free port for one run.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from alto_stream.broker.nodes import free_ports
from alto_stream.errors import AltoError, ConfigError
from benchmarks.systems.base import BenchConfig, System
from benchmarks.systems.gated import SUFFIX, GatedSystem
from benchmarks.systems.process import start, stop

__all__ = [
    "EngineOptions",
    "EngineProcess",
    "check_options",
    "make_system",
    "parse_system",
    "resolve",
]

FORMS = "alto, alto-admit<N>, or langgraph-<graph|fused|functional>[-sqlite], each with [+gate]"
"""The system names, as an error message lists them."""


def parse_system(name: str) -> tuple[str, str | None, str]:
    """``(kind, variant, checkpointer)`` of a system name (see the module doc).

    A ``+gate`` suffix is allowed (and not part of the answer); a bad name is a
    :class:`ConfigError` (bad usage).

    >>> parse_system("langgraph-graph-sqlite+gate")
    ('langgraph', 'graph', 'sqlite')
    >>> parse_system("alto")
    ('alto', None, 'memory')
    >>> parse_system("alto-admit8")
    ('alto', 'admit8', 'memory')
    """
    base = name.removesuffix(SUFFIX)
    if base == "alto":
        return "alto", None, "memory"
    if re.fullmatch(r"alto-admit([1-9][0-9]*)?", base):
        return "alto", base.removeprefix("alto-"), "memory"
    parts = base.split("-")
    if parts[0] == "langgraph" and len(parts) in (2, 3) and parts[-1] != "":
        durable = len(parts) == 3
        if durable and parts[2] != "sqlite":
            raise ConfigError(f"bad system {name!r}: the durable suffix is -sqlite ({FORMS})")
        return "langgraph", parts[1], "sqlite" if durable else "memory"
    raise ConfigError(f"bad system {name!r}: {FORMS}")


def check_options(
    name: str, *, admission: int | None, replicas: dict[str, int], stages: list[str]
) -> None:
    """Refuse options that do not apply to the system ``name`` (:class:`ConfigError`).

    ``--admission`` and ``--replicas`` are alto's (worker processes); an
    ``alto-admitN`` name fixes the limit, so a different ``--admission`` is a
    contradiction; a ``--replicas`` stage must be one of the app's ``stages``.
    """
    kind, variant, _ = parse_system(name)
    if kind != "alto":
        for flag, value in (("--admission", admission), ("--replicas", replicas)):
            if value:
                raise ConfigError(f"{flag} is for the alto systems, not {name!r}")
        return
    fixed = variant.removeprefix("admit") if variant else ""
    if fixed and admission is not None and admission != int(fixed):
        raise ConfigError(
            f"{name!r} sets the admission limit to {fixed} but --admission is {admission}; "
            f"give one of them (alto-admit with --admission N, or alto-admitN)"
        )
    for stage in replicas:
        if stage not in stages:
            raise ConfigError(f"no stage {stage!r}; the stages are {', '.join(stages)}")


Factory = Callable[[BenchConfig, "str | None"], System]


def resolve(name: str) -> Factory:
    """How to make the system ``name`` (checked now: a bad name fails before any start)."""
    parse_system(name)  # a bad name is refused whole, before any part of it is made
    if name.endswith(SUFFIX):
        inner = resolve(name.removesuffix(SUFFIX))

        def gated(config: BenchConfig, bootstrap: str | None) -> System:
            return GatedSystem(name, config, lambda c: inner(c, bootstrap))

        return gated
    kind, variant, checkpointer = parse_system(name)
    if kind == "alto":

        def alto(config: BenchConfig, bootstrap: str | None) -> System:
            from benchmarks.systems.alto import AltoSystem

            if bootstrap is None:
                raise AltoError("the alto system needs a Kafka broker (--bootstrap-servers)")
            if variant == "admit" and config.admission is None:
                raise AltoError("alto-admit takes its limit from --admission N (or: alto-admitN)")
            if variant is not None and variant != "admit":
                config = dataclasses.replace(config, admission=int(variant.removeprefix("admit")))
            system = AltoSystem(config, bootstrap)
            system.name = name
            return system

        return alto
    try:
        langgraph = importlib.import_module("benchmarks.langgraph")
    except ImportError as exc:
        raise AltoError(
            f"the LangGraph systems are not available here ({exc}); they live in "
            "benchmarks/langgraph/ and need the bench extra: pip install -e '.[bench]'"
        ) from exc
    variants = tuple(getattr(langgraph, "VARIANTS", ()))
    if variant not in variants:
        raise AltoError(f"no LangGraph variant {variant!r}; the variants are {', '.join(variants)}")

    def graph(config: BenchConfig, bootstrap: str | None) -> System:
        system: System = langgraph.make_system(
            dataclasses.replace(config, checkpointer=checkpointer), variant
        )
        return system

    return graph


def make_system(name: str, config: BenchConfig, *, bootstrap: str | None = None) -> System:
    """The System called ``name`` for ``config`` (alto needs the Kafka ``bootstrap``)."""
    return resolve(name)(config, bootstrap)


@dataclass(frozen=True)
class EngineOptions:
    """The emulated engine's settings (``python -m benchmarks.engine`` flags; None: its default)."""

    capacity: int | None = None
    token_rate: float | None = None
    first_token: float | None = None
    slowdown: float | None = None
    fifo: bool | None = None

    def flags(self) -> list[str]:
        """The command-line flags of the settings given."""
        out: list[str] = []
        for field in dataclasses.fields(self):
            value, flag = getattr(self, field.name), f"--{field.name.replace('_', '-')}"
            if isinstance(value, bool):
                out += [flag] if value else []
            elif value is not None:
                out += [flag, str(value)]
        return out


class EngineProcess:
    """``python -m benchmarks.engine`` on a free port for the ``async with`` (EMULATED).

    With ``llama=True``: ``python -m llama_cpp.server`` serving the packaged Gemma 3
    270M on the CPU instead (a real model; one request at a time).
    """

    def __init__(
        self, options: EngineOptions | None = None, *, log: Path | None = None, llama: bool = False
    ) -> None:
        self.options = options or EngineOptions()
        self.log = log
        self.llama = llama
        self.port = free_ports()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The server's command line."""
        if self.llama:
            from alto_stream.components.llm.models import default_gguf

            serve = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf())]
            # By default it cuts a generation short (`data: [DONE]`, no finish_reason)
            # whenever another request arrives: with calls in flight, every answer.
            serve += ["--interrupt_requests", "False"]
            return [*serve, "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048"]
        cmd = [sys.executable, "-m", "benchmarks.engine", "--port", str(self.port)]
        return [*cmd, *self.options.flags()]

    async def __aenter__(self) -> EngineProcess:
        what = "llama_cpp.server" if self.llama else "the emulated engine"
        self._process = await start(
            self.command(), probe=f"{self.url}/models", what=what, log=self.log, within=120.0
        )
        return self

    def stats(self) -> dict[str, object]:
        """The engine's ``/stats`` (served, tokens, config...)."""
        import json

        base = self.url.removesuffix("/v1")
        with urllib.request.urlopen(f"{base}/stats", timeout=5.0) as response:
            stats: dict[str, object] = json.loads(response.read())
        return stats

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await stop(self._process)
