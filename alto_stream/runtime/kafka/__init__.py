"""The Kafka transport: the only package that imports aiokafka.

Durations come in as float seconds and become Kafka's ``_ms`` here. Every
aiokafka error is wrapped in :class:`~alto_stream.errors.TransportError`.
"""

from __future__ import annotations

from alto_stream.runtime.kafka.ops import KafkaOps, TopicState
from alto_stream.runtime.kafka.producer import is_fencing
from alto_stream.runtime.kafka.transport import KafkaTransport

__all__ = ["KafkaOps", "KafkaTransport", "TopicState", "is_fencing"]
