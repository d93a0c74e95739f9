"""The message envelope: a record's ancestry, value and schema, and their Kafka form.

On Kafka a record is a value (Avro binary, no header; ``None`` for a marker) and
headers:

- ``alto.ancestry``: the :class:`~alto_stream.ancestry.Ancestry`, Avro
  single-object encoded with ``schemas/alto.Ancestry.avsc`` (always present);
- ``alto.schema`` and ``alto.fp``: the value's schema name and the writer's
  8-byte fingerprint (data records only);
- ``alto.stage``: the stage that produced the record (when known);
- ``alto.context``: on the end marker of a split whose aggregate takes a
  context, the value the split received, Avro single-object encoded (its
  schema is named by the fingerprint inside). Readers that do not know it
  ignore it.

So any tool can decode any topic without knowing the app.

>>> from alto_stream.ancestry import Ancestry
>>> codec = MessageCodec()
>>> env = Envelope(Ancestry.root("q1", query_time=0.0), {"text": "hi"}, "alto.Text", "split")
>>> value, headers = codec.encode(env)
>>> codec.decode(value, headers) == env
True
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from alto_stream import ancestry_reader
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.codec import SINGLE_OBJECT_MAGIC, Codec
from alto_stream.errors import AncestryError, DecodeError, SchemaError

__all__ = [
    "ANCESTRY_SCHEMA",
    "HEADER_ADMITTED",
    "HEADER_ANCESTRY",
    "HEADER_CONTEXT",
    "HEADER_FINGERPRINT",
    "HEADER_SCHEMA",
    "HEADER_STAGE",
    "Envelope",
    "MessageCodec",
]

HEADER_ANCESTRY = "alto.ancestry"
"""Kafka header holding the single-object-encoded ancestry."""
HEADER_SCHEMA = "alto.schema"
"""Kafka header holding the value's schema name (UTF-8)."""
HEADER_FINGERPRINT = "alto.fp"
"""Kafka header holding the value writer schema's 8-byte fingerprint."""
HEADER_STAGE = "alto.stage"
"""Kafka header holding the producing stage's name (UTF-8)."""
HEADER_CONTEXT = "alto.context"
"""Kafka header of a split's end marker: the split record's value, single-object encoded."""
HEADER_ADMITTED = "alto.admitted"
"""Kafka header on the first stage's outputs of a query admission let in: when (epoch ms, ASCII)."""
ANCESTRY_SCHEMA = "alto.Ancestry"
"""The schema of the ancestry header."""

_CORRUPT = (ValueError, IndexError, struct.error, AncestryError)
"""What the fast ancestry reader raises on corrupt bytes (UnicodeDecodeError is a ValueError)."""

_TEXTS = 1024
"""How many decoded header texts (stage and schema names) a codec remembers."""

_OURS = frozenset(
    {HEADER_ANCESTRY, HEADER_SCHEMA, HEADER_FINGERPRINT, HEADER_STAGE, HEADER_CONTEXT}
)

Headers = Sequence[tuple[str, bytes | None]]


class Envelope(NamedTuple):
    """One record as stages see it: its ancestry and, for data, its value and schema name.

    Markers (end, skip, error, timeout) carry no value and no schema; a split's
    end marker may carry ``context``: the value the split received, Avro
    single-object encoded, for an aggregate that takes a context. (A named
    tuple: two are made for every record a map handles, so they must be cheap.)
    """

    ancestry: Ancestry
    value: dict[str, Any] | None = None
    schema: str | None = None
    stage: str | None = None
    context: bytes | None = None

    @property
    def kind(self) -> Kind:
        """Data or which marker (the ancestry's kind)."""
        return self.ancestry.kind

    @property
    def id(self) -> str:
        """The record's id (the ancestry's id)."""
        return self.ancestry.id

    @property
    def is_marker(self) -> bool:
        """True for a payload-less marker."""
        return self.ancestry.kind is not Kind.DATA


class MessageCodec:
    """Turns envelopes into Kafka values and headers, and back."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec if codec is not None else Codec()
        self._texts: dict[bytes, str] = {}
        # (fingerprint, schema-name header) pairs seen to agree, and each writer's name.
        self._agreeing: set[tuple[bytes, bytes | None]] = set()
        self._writer_names: dict[bytes, str] = {}
        # Fail at construction, not on the first record, when the registry lacks the header schema.
        current = self.codec.registry.get(ANCESTRY_SCHEMA)
        self._fast_ancestry = ancestry_reader.matches(current.fingerprint)

    def encode(self, env: Envelope) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        """The Kafka value (None for a marker) and headers of ``env``.

        :class:`AncestryError` for a marker with a value or data without one;
        :class:`SchemaError` for data without a schema name, or a value that does
        not fit its schema.
        """
        headers = [(HEADER_ANCESTRY, self.encode_ancestry(env.ancestry))]
        if env.stage is not None:
            headers.append((HEADER_STAGE, env.stage.encode()))
        if env.context is not None:
            headers.append((HEADER_CONTEXT, env.context))
        if env.is_marker:
            if env.value is not None:
                raise AncestryError(
                    f"a {env.kind.name} marker carries no value, got {_short(env.value)} "
                    f"({env.id}); fix: drop the value, or make it a DATA record"
                )
            return None, headers
        if env.value is None:
            raise AncestryError(
                f"a DATA record needs a value, got None ({env.id}); fix: send a marker instead"
            )
        if env.schema is None:
            raise SchemaError(
                f"a DATA record needs a schema name, got None ({env.id}); fix: set "
                "Envelope.schema (for example 'alto.Text')"
            )
        schema = self.codec.registry.get(env.schema)
        value = self.codec.encode(env.schema, env.value)
        headers.append((HEADER_SCHEMA, schema.name.encode()))
        headers.append((HEADER_FINGERPRINT, schema.fingerprint))
        return value, headers

    def encode_ancestry(self, ancestry: Ancestry) -> bytes:
        """The ``alto.ancestry`` header value of ``ancestry``."""
        if ancestry.wire is not None:  # read from a record: those very bytes
            return ancestry.wire
        return self.codec.encode_single(ANCESTRY_SCHEMA, ancestry.to_dict())

    def decode(
        self,
        value: bytes | None,
        headers: Headers | None,
        *,
        reader_schema: str | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Envelope:
        """The envelope of a Kafka record; its value read as ``reader_schema``.

        The reader defaults to the current version of the writer's schema. Any
        record that does not follow the envelope rules is a :class:`DecodeError`
        with topic, partition and offset.
        """
        # One pass over the headers (this runs for every record a worker reads).
        header = stage_raw = name_raw = fingerprint = context = None
        for key, raw in headers or ():
            if raw is None:
                continue
            if key == HEADER_ANCESTRY:
                header = raw
            elif key == HEADER_FINGERPRINT:
                fingerprint = raw
            elif key == HEADER_SCHEMA:
                name_raw = raw
            elif key == HEADER_STAGE:
                stage_raw = raw
            elif key == HEADER_CONTEXT:
                context = bytes(raw)
        ancestry = self._ancestry(header, topic, partition, offset)
        query_time = ancestry.query_time
        if query_time - query_time != 0.0 or (ancestry.kind is Kind.END and not ancestry.path):
            # Readable, but no stage could run it: the checks cheapest on the hot path.
            raise DecodeError(
                f"{_impossible(ancestry)} ({ancestry.id}); fix: write queries with "
                "alto-stream push or Client.push, or follow docs/wire-format.md",
                topic=topic,
                partition=partition,
                offset=offset,
            )
        stage = None
        if stage_raw is not None:
            # It only informs: bytes that are not UTF-8 read with replacement characters
            # (before 2026-12-03 they failed the record, and its query).
            stage = self._texts.get(stage_raw) or self._text(
                stage_raw, HEADER_STAGE, topic, partition, offset, strict=False
            )
        if ancestry.kind is not Kind.DATA:
            if value is not None:
                raise DecodeError(
                    f"a {ancestry.kind.name} marker must have no value, got {_short(value)} "
                    f"({ancestry.id})",
                    topic=topic,
                    partition=partition,
                    offset=offset,
                )
            return Envelope(ancestry, None, None, stage, context)
        if value is None:
            raise DecodeError(
                f"a DATA record needs a value, got none ({ancestry.id}): expected Avro bytes",
                topic=topic,
                partition=partition,
                offset=offset,
            )
        if fingerprint is None:
            raise DecodeError(
                f"a DATA record needs the {HEADER_FINGERPRINT} header, got "
                f"{sorted(_pick(headers))} ({ancestry.id})",
                topic=topic,
                partition=partition,
                offset=offset,
            )
        if type(fingerprint) is not bytes or (name_raw is not None and type(name_raw) is not bytes):
            fingerprint = bytes(fingerprint)  # hashable, for the lookups below
            name_raw = None if name_raw is None else bytes(name_raw)
        if (fingerprint, name_raw) not in self._agreeing:
            self._check_name(fingerprint, name_raw, ancestry, topic, partition, offset)
        payload = self.codec.decode(
            value, fingerprint, reader_schema, topic=topic, partition=partition, offset=offset
        )
        # The codec reads with the current version of the writer's schema by default.
        schema = reader_schema or self._writer_names.get(fingerprint)
        return Envelope(ancestry, payload, schema, stage)

    def encode_context(self, schema: str, value: dict[str, Any]) -> bytes:
        """The ``alto.context`` header of ``value``: Avro single-object encoding."""
        return self.codec.encode_single(schema, value)

    def decode_context(
        self,
        raw: bytes,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """The schema name and value of an ``alto.context`` header (:class:`DecodeError` if bad).

        ``topic``, ``partition`` and ``offset``: where the end marker carrying it was read.
        """
        try:
            value = self.codec.decode_single(raw)  # where is added below, once
        except DecodeError as exc:
            raise DecodeError(
                f"the {HEADER_CONTEXT} header of a split's end marker: {exc}",
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
        writer = self.codec.registry.find(raw[2:10])
        return (writer.name if writer is not None else "?"), value

    def decode_ancestry(
        self,
        headers: Headers | None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Ancestry:
        """Only the ancestry of a Kafka record (cheap: the value is not read)."""
        return self._ancestry(_pick(headers).get(HEADER_ANCESTRY), topic, partition, offset)

    # -- internals ----------------------------------------------------------

    def _text(
        self,
        raw: bytes,
        key: str,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        *,
        strict: bool = True,
    ) -> str:
        text = self._texts.get(raw)  # stage and schema names: a handful, seen on every record
        if text is not None:
            return text
        try:
            text = bytes(raw).decode("utf-8", "strict" if strict else "replace")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"header {key} is not UTF-8 text: {_short(raw)}",
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
        if len(self._texts) >= _TEXTS:
            self._texts.clear()
        self._texts[bytes(raw)] = text
        return text

    def _check_name(
        self,
        fingerprint: bytes,
        name_raw: bytes | None,
        ancestry: Ancestry,
        topic: str | None,
        partition: int | None,
        offset: int | None,
    ) -> None:
        """Fail if the schema-name header contradicts the fingerprint; remember pairs that agree."""
        writer = self.codec.registry.find(fingerprint)
        if writer is None:  # the codec's decode says so, with the fix
            return
        if name_raw is not None:
            name = self._text(name_raw, HEADER_SCHEMA, topic, partition, offset)
            if name != writer.name:
                raise DecodeError(
                    f"header {HEADER_SCHEMA} says {name!r} but fingerprint "
                    f"{writer.fingerprint_hex} is {writer.name!r} ({ancestry.id}): garbled headers",
                    topic=topic,
                    partition=partition,
                    offset=offset,
                )
        if len(self._agreeing) >= _TEXTS:
            self._agreeing.clear()
        self._agreeing.add((bytes(fingerprint), None if name_raw is None else bytes(name_raw)))
        self._writer_names[bytes(fingerprint)] = writer.name

    def _ancestry(
        self, header: bytes | None, topic: str | None, partition: int | None, offset: int | None
    ) -> Ancestry:
        if header is None:
            raise DecodeError(
                f"missing {HEADER_ANCESTRY} header: expected every alto-stream record to carry "
                "its ancestry (was it produced by alto-stream?)",
                topic=topic,
                partition=partition,
                offset=offset,
            )
        header = bytes(header)
        if (
            self._fast_ancestry
            and header[2:10] == ancestry_reader.FINGERPRINT
            and header[:2] == (SINGLE_OBJECT_MAGIC)
        ):
            try:  # the current version: read directly (see alto_stream.ancestry_reader)
                return ancestry_reader.read(header)  # its wire: these bytes
            except _CORRUPT as exc:
                raise DecodeError(
                    f"garbled {HEADER_ANCESTRY} header ({type(exc).__name__}: {exc}): expected "
                    f"{ANCESTRY_SCHEMA} {ancestry_reader.FINGERPRINT.hex()} in Avro binary",
                    topic=topic,
                    partition=partition,
                    offset=offset,
                ) from exc
        data = self.codec.decode_single(
            header, ANCESTRY_SCHEMA, topic=topic, partition=partition, offset=offset
        )
        try:
            ancestry = Ancestry.from_dict(data)
        except AncestryError as exc:
            raise DecodeError(
                f"garbled {HEADER_ANCESTRY} header: {exc}",
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
        return ancestry.read_from(header)


def _impossible(ancestry: Ancestry) -> str:
    """Why a readable ancestry cannot be run (see :meth:`MessageCodec.decode`)."""
    if not math.isfinite(ancestry.query_time):
        return f"an ancestry whose query_time is {ancestry.query_time}, not a time"
    return "an END marker with no frame: an END closes a split, so it needs the split's frame"


def _pick(headers: Headers | None) -> dict[str, bytes]:
    """Our headers by key (the last of duplicates wins); others are ignored."""
    found: dict[str, bytes] = {}
    for key, value in headers or ():
        if key in _OURS and value is not None:
            found[key] = value
    return found


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
