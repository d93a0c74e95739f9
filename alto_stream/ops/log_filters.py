"""What alto-stream does to aiokafka's log lines: routine events lowered, repeats thinned.

aiokafka logs some routine events as errors or warnings (a retried
group-coordinator lookup, a topic not in the metadata yet, a heartbeat during a
rebalance): :class:`RetriedLookupFilter`, :class:`NewTopicFilter` and
:class:`RebalanceHeartbeatFilter` lower them to INFO and say why. While a broker
is down it repeats the same lines many times a second: :class:`RepeatFilter`
shows each once per window, with a count of the rest (on the handler
:func:`~alto_stream.ops.logs.configure` installs, or on aiokafka's loggers
between :func:`limit_repeats` and :func:`unlimit_repeats`, for a client in
someone else's program). :mod:`alto_stream.ops.logs` installs them; every name
here is importable from there too.
"""

from __future__ import annotations

import logging
import re
import threading
import time

__all__ = [
    "NewTopicFilter",
    "RebalanceHeartbeatFilter",
    "RepeatFilter",
    "RetriedLookupFilter",
    "limit_repeats",
    "unlimit_repeats",
]


class RetriedLookupFilter(logging.Filter):
    """aiokafka's retried group-coordinator lookups, logged as INFO, not ERROR.

    aiokafka logs ``Group Coordinator Request failed`` at ERROR for every
    failed lookup, also for the retriable ones (a new broker creating its
    offsets topic answers GroupCoordinatorNotAvailable for a second), which it
    retries; every worker's log on a fresh broker opened with one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Lower a retried lookup's failure to INFO and say it is retried; keep every record."""
        args = record.args if isinstance(record.args, tuple) else ()
        error = args[0] if args else None
        if (
            record.levelno == logging.ERROR
            and str(record.msg).startswith(_LOOKUP_FAILED)
            and getattr(error, "retriable", False)
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg} (retriable: retrying)"
        return True


class NewTopicFilter(logging.Filter):
    """aiokafka's ``Topic X not found in cluster metadata``, logged as INFO, not ERROR.

    aiokafka logs it at ERROR whenever a metadata answer lacks a topic it asked
    for, and retries; right after ``up`` creates an app's topics that is their
    first second (2 of 9 fresh ``up`` runs opened with such an ERROR line). A
    topic that really is missing is reported by the worker itself, before it starts.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Lower the line to INFO and say it is retried; keep every record."""
        if record.levelno == logging.ERROR and str(record.msg).startswith(_NOT_IN_METADATA):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg} (yet: retrying)"
        return True


class RebalanceHeartbeatFilter(logging.Filter):
    """aiokafka's ``Heartbeat failed for group X because it is rebalancing``, as INFO.

    aiokafka logs it at WARNING at every member's heartbeat during a rebalance,
    which is how a member learns of one: a normal event whenever a worker joins
    or leaves (a new user counted ~40 lines in one scale-up/down run). The
    worker's own lines say what it was given afterwards.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Lower the line to INFO and say it is a rebalance; keep every record."""
        if record.levelno == logging.WARNING and str(record.msg).startswith(_REBALANCING):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg} (members joined or left: rejoining)"
        return True


class RepeatFilter(logging.Filter):
    """aiokafka's repeated lines, once per ``window`` seconds each, with a count of the rest.

    While a broker is down aiokafka logs every failed connection and fetch, 20 to
    45 ERROR lines a second per worker (a new user counted ~1,300 per worker while
    two of three nodes were down): the one line that matters drowned. A line of the
    same logger that says the same thing (its numbers aside: node ids, ports)
    within ``window`` seconds of the last one shown is dropped, whatever its level
    (the lines :class:`RetriedLookupFilter` lowers to INFO came ten a second); the
    next one shown says how many were, and between which times.
    """

    def __init__(self, window: float = 10.0, prefix: str = "aiokafka") -> None:
        super().__init__()
        self.window = window
        self.prefix = prefix
        self._last: dict[tuple[str, str], _Shown] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the first of each kind of line per window; drop (and count) the others."""
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, _NUMBERS.sub("#", record.getMessage()))
        last = self._last.get(key)
        if last is not None and record.created - last.at < self.window:
            last.dropped += 1
            last.first_dropped = last.first_dropped or record.created
            last.last_dropped = record.created
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = _Shown(record.created)
        if last is not None and last.dropped:
            record.msg = (
                f"{record.msg} (and {last.dropped} more like it from "
                f"{_clock(last.first_dropped)} to {_clock(last.last_dropped)})"
            )
        return True


_CLIENT_REPEATS = RepeatFilter()
_client_lock = threading.Lock()
_clients = 0


def limit_repeats() -> None:
    """Show aiokafka's repeated lines once per 10 s (with a count) until :func:`unlimit_repeats`.

    For a :class:`~alto_stream.client.Client` in someone else's program, where
    :func:`configure` (which filters on its handler) does not run: one
    :class:`RepeatFilter` goes on every ``aiokafka`` logger, whatever handlers
    the program set up, while at least one client is open. Calls nest.
    """
    global _clients
    with _client_lock:
        _clients += 1
        for logger in _aiokafka_loggers():
            if _CLIENT_REPEATS not in logger.filters:
                logger.addFilter(_CLIENT_REPEATS)


def unlimit_repeats() -> None:
    """Undo one :func:`limit_repeats`; the last one takes the filter off again."""
    global _clients
    with _client_lock:
        _clients = max(_clients - 1, 0)
        if not _clients:
            for logger in _aiokafka_loggers():
                logger.removeFilter(_CLIENT_REPEATS)


def _aiokafka_loggers() -> list[logging.Logger]:
    # A logger's filters see only its own records (not its children's): each one needs it.
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "aiokafka"]
    return [logging.getLogger(n) for n in ("aiokafka", *names)]


class _Shown:
    """When a kind of line was last shown, and what was dropped since."""

    __slots__ = ("at", "dropped", "first_dropped", "last_dropped")

    def __init__(self, at: float) -> None:
        self.at = at
        self.dropped = 0
        self.first_dropped = 0.0
        self.last_dropped = 0.0


def _clock(created: float) -> str:
    """``12:59:04Z``: the time of day of a log line (UTC, as the lines' own times)."""
    return time.strftime("%H:%M:%SZ", time.gmtime(created))


_NUMBERS = re.compile(r"\d+")


_LOOKUP_FAILED = "Group Coordinator Request failed"
_NOT_IN_METADATA = "Topic %s not found in cluster metadata"
_REBALANCING = "Heartbeat failed for group %s because it is rebalancing"
