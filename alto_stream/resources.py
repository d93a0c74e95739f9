"""Process-wide resources that stage handlers share (models, clients): started once, closed at exit.

A component (an LLM, an embedder) registers itself here when an app module
creates it; registering loads nothing. A worker process then:

- checks the resources its stage declared (:func:`check_for`, cheap: a missing
  GPU or package is one clear error at worker start, before any record);
- starts those declared with ``preload`` (:func:`start_for`), so that the first
  record does not wait for a model to load; the others start on first use;
- closes every resource that was started when it stops (:func:`close_all`).

The runtime knows nothing of models: it only calls these three functions.
Commands that merely load an app (``push``, ``topics``, ``trace``...) call none
of them, so they load no model.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Resource",
    "check_for",
    "close_all",
    "preload",
    "register",
    "registered",
    "start_for",
]

log = logging.getLogger(__name__)


class Resource(Protocol):
    """What a shared resource offers the worker process."""

    @property
    def name(self) -> str:
        """A short label for logs (never a secret)."""

    async def check(self) -> None:
        """Fail fast (AltoError with the fix) when it cannot work here; loads nothing."""

    async def start(self) -> None:
        """Load or connect (idempotent: later calls return at once)."""

    async def close(self) -> None:
        """Release what :meth:`start` took (idempotent)."""


@dataclass(frozen=True)
class _Entry:
    resource: Resource
    stages: frozenset[str]  # the stages that declared it (empty: used on demand only)
    preload: bool
    app: str | None = None  # only that app's stages (None: a stage of that name in any app)


_REGISTRY: list[_Entry] = []


def register(
    resource: Resource,
    *,
    stages: Iterable[str] | None = None,
    preload: bool = False,
    app: str | None = None,
) -> None:
    """Register ``resource``; workers of ``stages`` check it at start (and start it if ``preload``).

    With ``app``, only the workers of that app's ``stages``: another app in the
    same process (a copy built with its own models, in a test or a benchmark)
    may have stages of the same names. Without ``stages`` it starts on first
    use only. Every registered resource that started is closed when the worker
    stops.
    """
    _REGISTRY.append(_Entry(resource, frozenset(stages or ()), preload, app))


def preload(
    start: Callable[[], Awaitable[object]],
    *,
    stages: Iterable[str],
    app: str | None = None,
    name: str | None = None,
) -> None:
    """Run ``start`` when a worker of one of ``stages`` (of ``app``) starts, once per process.

    For a model or index of your own that should be loaded before the first
    record rather than by it, e.g. ``preload(embedder.aload, stages=["score"])``
    or ``preload(retriever.aopen, stages=["score"], app="qa")``. Nothing is
    checked or closed: it is freed with the process.
    """
    register(
        _Started(start, name or str(getattr(start, "__qualname__", "resource"))),
        stages=stages,
        preload=True,
        app=app,
    )


class _Started:
    """A start-up call as a :class:`Resource` (see :func:`preload`)."""

    def __init__(self, start: Callable[[], Awaitable[object]], name: str) -> None:
        self._start = start
        self._done = False
        self.name = name

    async def check(self) -> None:
        """Nothing to check before starting."""

    async def start(self) -> None:
        """Run the call, the first time only."""
        if not self._done:
            await self._start()
            self._done = True

    async def close(self) -> None:
        """Nothing to release."""


def registered() -> list[Resource]:
    """Every registered resource, in registration order."""
    return [entry.resource for entry in _REGISTRY]


def _for(stage: str, app: str | None = None) -> list[_Entry]:
    return [e for e in _REGISTRY if stage in e.stages and e.app in (None, app)]


async def check_for(stage: str, app: str | None = None) -> None:
    """Check the resources that ``stage`` (of ``app``) declared (raises the first problem)."""
    for entry in _for(stage, app):
        await entry.resource.check()


async def start_for(stage: str, app: str | None = None) -> None:
    """Check the resources of ``stage`` (of ``app``), and start those declared with ``preload``."""
    await check_for(stage, app)
    for entry in _for(stage, app):
        if entry.preload:
            log.info("stage %s: starting %s", stage, entry.resource.name)
            await entry.resource.start()


async def close_all() -> None:
    """Close every registered resource (each one's errors are logged, not raised)."""
    closed: set[int] = set()
    for entry in reversed(_REGISTRY):
        if id(entry.resource) in closed:  # registered more than once
            continue
        closed.add(id(entry.resource))
        try:
            await entry.resource.close()
        except Exception:  # one failing close must not keep the others open
            log.exception("closing %s failed", entry.resource.name)
