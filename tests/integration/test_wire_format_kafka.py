"""docs/wire-format.md is enough to write input: records built from it alone are processed.

The records come from :mod:`outside_producer` (no alto_stream import: the
document's schemas and fingerprints, the official ``avro`` package) and go
through a raw aiokafka producer; the workers and the result check are
alto-stream's own.
"""

from __future__ import annotations

import ast
import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from outside_producer import doc_schemas, fingerprint, query_record, read_avro

from alto_stream.client import Client
from alto_stream.codec import Codec
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from workers import textflow

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

PRODUCER = Path(__file__).with_name("outside_producer.py")
DOCS = [
    "Hello there. General Kenobi!\n\nYou are a bold one. Skip this word.",
    "One.",
]


def test_the_record_builder_imports_nothing_of_alto_stream() -> None:
    tree = ast.parse(PRODUCER.read_text())
    imported = [
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert imported and not [name for name in imported if name.startswith(("alto", "workers"))]


def test_the_document_states_the_codecs_schemas_and_fingerprints() -> None:
    codec = Codec()
    schemas = doc_schemas()
    assert set(schemas) >= {"alto.Ancestry", "alto.Text", "alto.Query", "alto.DeadLetter"}
    for name, stated in schemas.items():
        current = codec.registry.get(name)
        assert stated.canonical == current.canonical_form, name
        assert fingerprint(stated.canonical.encode()) == stated.stated == current.fingerprint


def test_records_built_from_the_document_are_processed(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    asyncio.run(asyncio.wait_for(_run(kafka_bootstrap, unique_name("wire")), 200))


async def _run(bootstrap: str, name: str) -> None:
    app = textflow.build(name)
    topology = app.topology()
    transport = KafkaTransport(bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    ids = [f"outside-{uuid.uuid4().hex}" for _ in DOCS]
    bad_id = f"outside-{uuid.uuid4().hex}"
    records = [
        # every header the document names
        query_record({"text": DOCS[0]}, payload_schema="alto.Text", query_id=ids[0],
                     query_time=time.time(), schema_header="alto.Text", key=ids[0].encode()),
        # only the required ones, and no key
        query_record({"text": DOCS[1]}, payload_schema="alto.Text", query_id=ids[1],
                     query_time=time.time(), stage_header=None),
        # alto.schema contradicting alto.fp: a dead letter
        query_record({"text": "x"}, payload_schema="alto.Text", query_id=bad_id,
                     query_time=time.time(), schema_header="alto.Json"),
    ]  # fmt: skip
    async with LocalRun(app, transport), Client(app, transport) as client:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for key, value, headers in records:
                await producer.send_and_wait(topology.input_topic, value, key=key, headers=headers)
        finally:
            await producer.stop()
        finals = {
            r.query_id: r
            async for r in client.follow(ids, timeout=150, since=time.time() - 60, partials=False)
        }
    assert {q: finals[q].value for q in ids} == {
        q: {"text": textflow.reference(doc)} for q, doc in zip(ids, DOCS, strict=True)
    }
    letters = []
    dlq = topology.plan("paragraphs").dead_letter_topic
    for partition in range(await transport.partitions(dlq)):
        letters += await transport.read_partition(dlq, partition)
    dead = doc_schemas()["alto.DeadLetter"]
    assert len(letters) == 1
    [fp] = [v for k, v in letters[0].headers if k == "alto.fp"]
    assert fp == dead.stated  # read from outside, too
    letter = read_avro(dead.parsed, letters[0].value)
    assert letter["stage"] == "paragraphs"
    assert letter["topic"] == topology.input_topic
    assert "alto.schema" in letter["error"] and "alto.Json" in letter["error"]
    assert letter["value"] == records[2][1]
    assert {h["key"]: h["value"] for h in letter["headers"]} == dict(records[2][2])
