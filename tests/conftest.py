"""Shared test set-up: the Kafka fixtures (``kafka_bootstrap``, ``unique_name``).

They live in :mod:`alto_stream.testing` so that apps built on alto-stream can
load the same plugin in their own tests.
"""

pytest_plugins = ["alto_stream.testing"]
