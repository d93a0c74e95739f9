"""alto-stream: compound AI applications as streaming dataflows on Apache Kafka.

The public API::

    from alto_stream import App, Child, Client

``App`` registers stages (map, split, batch, aggregate) and infers the
topology; ``Child`` is what an aggregate receives, with an
``AggregateContext`` when it asks for one; ``Client`` pushes queries and
follows their results. Everything else lives in submodules.
"""

from __future__ import annotations

from alto_stream.aggregate import AggregateContext, Child
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.app import App
from alto_stream.client import Client, Result
from alto_stream.errors import AltoError, RetriableError

__all__ = [
    "AggregateContext",
    "AltoError",
    "Ancestry",
    "App",
    "Child",
    "Client",
    "Kind",
    "Result",
    "RetriableError",
]

__version__ = "0.1.0"
