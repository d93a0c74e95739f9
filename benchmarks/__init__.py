"""Benchmarks of the alto-stream runtime on a local Kafka broker (see README.md).

Run them with ``alto-stream bench`` from a checkout; the code lives in
:mod:`benchmarks.runtime`, the apps it measures in :mod:`benchmarks.apps`.
"""
