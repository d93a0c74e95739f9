"""A local Apache Kafka for development and tests: install the jars, start a KRaft cluster.

``install()`` resolves Apache Kafka 4.1.1 with Maven (or uses ``KAFKA_HOME``);
``start()`` runs a cluster of combined broker + controller nodes on 127.0.0.1
and returns once every broker answers; ``status()`` and ``stop()`` manage it.
Nothing here talks to Kafka beyond a raw metadata probe, so the module works
with no event loop and no client library.
"""

from __future__ import annotations

from alto_stream.broker.cluster import (
    Cluster,
    ClusterStatus,
    Node,
    default_data_dir,
    start,
    status,
    stop,
)
from alto_stream.broker.config import DEFAULT_HEAP, DEFAULT_PORT, Layout
from alto_stream.broker.installer import KAFKA_VERSION, find_java, install, installed_libs
from alto_stream.broker.nodes import free_base_port, port_in_use
from alto_stream.broker.probe import Metadata, TopicInfo, fetch_metadata
from alto_stream.broker.secured import SecureProfile

__all__ = [
    "DEFAULT_HEAP",
    "DEFAULT_PORT",
    "KAFKA_VERSION",
    "Cluster",
    "ClusterStatus",
    "Layout",
    "Metadata",
    "Node",
    "SecureProfile",
    "TopicInfo",
    "default_data_dir",
    "fetch_metadata",
    "find_java",
    "free_base_port",
    "install",
    "installed_libs",
    "port_in_use",
    "start",
    "status",
    "stop",
]
