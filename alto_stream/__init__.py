"""alto-stream: compound AI applications as streaming dataflows on Apache Kafka."""

from __future__ import annotations

__version__ = "0.1.0"
