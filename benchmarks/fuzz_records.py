"""The fuzz app (every stage kind) and a seeded generator of bad records for it.

The app: ``input -> paragraphs (split, async generator) -> words (split, def
returning a list) -> shout (map) -> embed (batch) -> line (aggregate closing
words) -> document (aggregate closing paragraphs)``, both aggregates with a
time-out so that partial trees of bogus queries close.

Each bad record is one of :data:`KINDS`, aimed at the input topic or at one of
the intermediate topics, with a bogus query id of its own (so that it can be
accounted for: a dead letter, or the output of its own query).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry, Frame, Kind
from alto_stream.message import (
    HEADER_ANCESTRY,
    HEADER_FINGERPRINT,
    HEADER_SCHEMA,
    Envelope,
    MessageCodec,
)

__all__ = ["KINDS", "Bad", "BadRecords", "build_app", "reference", "valid_text"]

KINDS = (
    "random-bytes",
    "null-value",
    "truncated-avro",
    "wrong-schema",
    "missing-ancestry",
    "garbled-ancestry",
    "oversized-ancestry",
    "large-payload",
    "deep-ancestry",
    "duplicate",
    "lying-count",
    "conflicting-count",
    "end-marker",
    "marker-with-value",
    "orphan",
    "wrong-depth",
)
"""What the generator makes; ``large-payload`` and ``oversized-ancestry`` are rare."""

_WORDS = ("alpha", "beta", "gamma", "delta", "skip", "omega", "kappa", "ΐota")


def build_app(name: str, *, timeout: float) -> App:
    """The fuzz app under ``name``; aggregates close partial trees after ``timeout`` s."""
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def paragraphs(doc: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for block in doc["text"].split("\n\n"):
            if block.strip():
                yield {"text": block.strip()}

    @app.split(source=paragraphs, schema="alto.Text")
    def words(paragraph: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in paragraph["text"].split()]

    @app.map(source=words, schema="alto.Text")
    async def shout(word: dict[str, Any]) -> dict[str, Any] | None:
        return None if word["text"] == "skip" else {"text": word["text"].upper()}

    @app.batch(source=shout, schema="alto.Text", size=16, wait=0.01)
    def embed(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"text": v["text"]} for v in values]

    @app.aggregate(source=embed, closes=words, schema="alto.Text", timeout=timeout)
    async def line(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    @app.aggregate(source=line, closes=paragraphs, schema="alto.Text", timeout=timeout)
    def document(children: list[Child]) -> dict[str, Any]:
        return {"text": "\n\n".join(c.value["text"] for c in children if c.ok)}

    return app


def reference(text: str) -> str:
    """What :func:`build_app` makes of a query, sequentially."""
    blocks = [b.strip() for b in text.split("\n\n") if b.strip()]
    return "\n\n".join(" ".join(w.upper() for w in b.split() if w != "skip") for b in blocks)


def valid_text(rng: random.Random) -> str:
    """A small valid query: 1-3 paragraphs of 0-5 words (a skip now and then)."""
    return "\n\n".join(
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 5)))
        for _ in range(rng.randint(1, 3))
    )


@dataclass
class Bad:
    """One bad record: where it goes, its bytes, and the query id its ancestry names."""

    kind: str
    topic: str
    value: bytes | None
    headers: list[tuple[str, bytes]]
    query_id: str | None
    position: tuple[str, int, int] | None = field(default=None, compare=False)


class BadRecords:
    """A seeded generator of bad records for the fuzz app's topics."""

    def __init__(self, app: App, seed: int) -> None:
        topology = app.topology()
        self.rng = random.Random(seed)
        self.codec = MessageCodec()
        # Topic -> the path length its readers expect.
        self.topics = {
            topology.input_topic: 0,
            **{
                topology.plan(stage).output_topic: topology.plan(stage).depth_out
                for stage in ("paragraphs", "words", "shout", "embed", "line")
            },
        }
        self._made: list[Bad] = []
        self._n = 0

    def make(self, count: int) -> list[Bad]:
        """``count`` bad records (a kind drawn for each; duplicates repeat earlier ones)."""
        out: list[Bad] = []
        while len(out) < count:
            before = len(self._made)
            bad = self.one()
            # A kind may make a record before its own (see _conflicting_count).
            out += [b for b in self._made[before:] if b is not bad] + [bad]
        return out[:count]

    def one(self) -> Bad:
        """One bad record of a random kind."""
        rng = self.rng
        kind = rng.choice(KINDS)
        if kind in ("large-payload", "oversized-ancestry") and rng.random() < 0.9:
            kind = "orphan"  # rare: each is most of a megabyte
        if kind == "duplicate":
            if self._made:
                original = rng.choice(self._made)
                return Bad("duplicate", original.topic, original.value, original.headers,
                           original.query_id)  # fmt: skip
            kind = "random-bytes"
        topic = rng.choice(list(self.topics))
        self._n += 1
        bad = getattr(self, "_" + kind.replace("-", "_"))(topic, f"bad{self._n}-{kind}")
        self._made.append(bad)
        return bad

    # -- helpers ----------------------------------------------------------

    def _ancestry(self, query_id: str, depth: int, *, count: bool = False) -> Ancestry:
        rng = self.rng
        path = tuple(
            Frame(f"f{rng.randrange(1 << 16):x}", rng.randrange(4), None) for _ in range(depth)
        )
        if count and path:
            last = path[-1]
            path = (*path[:-1], Frame(last.attempt, last.index, last.index + 1))
        return Ancestry(query_id, self._query_time(), path)

    def _query_time(self) -> float:
        """Now, or (one in ten) the epoch: a record claiming the oldest query runs first."""
        return 0.0 if self.rng.random() < 0.1 else time.time()

    def _data(self, topic: str, ancestry: Ancestry, kind: str, text: str = "") -> Bad:
        text = text or " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(1, 4)))
        value, headers = self.codec.encode(Envelope(ancestry, {"text": text}, "alto.Text", "fuzz"))
        return Bad(kind, topic, value, headers, ancestry.query_id)

    def _good_headers_without_ancestry(self) -> list[tuple[str, bytes]]:
        _, headers = self.codec.encode(
            Envelope(Ancestry.root("x"), {"text": "x"}, "alto.Text", "fuzz")
        )
        return [(k, v) for k, v in headers if k != HEADER_ANCESTRY]

    # -- the kinds ----------------------------------------------------------

    def _random_bytes(self, topic: str, qid: str) -> Bad:
        rng = self.rng
        headers = []
        if rng.random() < 0.5:
            headers = [
                (rng.choice([HEADER_ANCESTRY, HEADER_SCHEMA, HEADER_FINGERPRINT, "junk"]),
                 rng.randbytes(rng.randint(0, 64)))
                for _ in range(rng.randint(1, 4))
            ]  # fmt: skip
        return Bad("random-bytes", topic, rng.randbytes(rng.randint(0, 3000)), headers, None)

    def _null_value(self, topic: str, qid: str) -> Bad:
        bad = self._data(topic, self._ancestry(qid, self.topics[topic]), "null-value")
        bad.value = None
        return bad

    def _truncated_avro(self, topic: str, qid: str) -> Bad:
        bad = self._data(topic, self._ancestry(qid, self.topics[topic]), "truncated-avro")
        assert bad.value is not None
        bad.value = bad.value[: self.rng.randrange(len(bad.value))]
        return bad

    def _wrong_schema(self, topic: str, qid: str) -> Bad:
        ancestry = self._ancestry(qid, self.topics[topic])
        value, headers = self.codec.encode(Envelope(ancestry, {"n": 7}, "alto.Count", "fuzz"))
        return Bad("wrong-schema", topic, value, headers, qid)

    def _missing_ancestry(self, topic: str, qid: str) -> Bad:
        bad = self._data(topic, Ancestry.root(qid), "missing-ancestry")
        return Bad(bad.kind, topic, bad.value, self._good_headers_without_ancestry(), None)

    def _garbled_ancestry(self, topic: str, qid: str) -> Bad:
        rng = self.rng
        good = self._data(topic, self._ancestry(qid, self.topics[topic]), "garbled-ancestry")
        real = dict(good.headers)[HEADER_ANCESTRY]
        if rng.random() < 0.5:  # the right magic and fingerprint, then noise
            garbled = real[:10] + rng.randbytes(rng.randint(0, 80))
        else:  # the real bytes with a few flipped
            data = bytearray(real)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            garbled = bytes(data)
        headers = [(k, garbled if k == HEADER_ANCESTRY else v) for k, v in good.headers]
        try:  # some flips still read: then the query id is what was read
            qid_read: str | None = self.codec.decode_ancestry(headers).query_id
        except Exception:
            qid_read = None
        return Bad("garbled-ancestry", topic, good.value, headers, qid_read)

    def _oversized_ancestry(self, topic: str, qid: str) -> Bad:
        ancestry = self._ancestry(qid, self.topics[topic])
        size = self.rng.randint(200_000, 600_000)
        if self.rng.random() < 0.5:
            marker = ancestry.marker(Kind.ERROR, "r" * size)
            _, headers = self.codec.encode(Envelope(marker, None, None, "fuzz"))
            return Bad("oversized-ancestry", topic, None, headers, qid)
        big = Ancestry(qid + "q" * size, ancestry.query_time, ancestry.path)
        return self._data(topic, big, "oversized-ancestry")

    def _large_payload(self, topic: str, qid: str) -> Bad:
        # "ΐ" upper-cases to 1.2 MB: too large to write; 900 KB of "a" goes through.
        text = "ΐ" * 200_000 if self.rng.random() < 0.5 else "a" * 900_000
        return self._data(topic, self._ancestry(qid, self.topics[topic]), "large-payload", text)

    def _deep_ancestry(self, topic: str, qid: str) -> Bad:
        return self._data(topic, self._ancestry(qid, 1000), "deep-ancestry")

    def _lying_count(self, topic: str, qid: str) -> Bad:
        depth = max(1, self.topics[topic])
        ancestry = self._ancestry(qid, depth)
        claim = self.rng.choice([300_000, 1_000_000, 2**31 - 1])
        level = self.rng.randrange(depth)
        frame = ancestry.path[level]
        path = list(ancestry.path)
        path[level] = Frame(frame.attempt, frame.index, claim)
        ancestry = Ancestry(qid, ancestry.query_time, tuple(path))
        return self._data(topic, ancestry, "lying-count")

    def _conflicting_count(self, topic: str, qid: str) -> Bad:
        # The second of a pair: the first (same attempt, another count) went just before.
        depth = max(1, self.topics[topic])
        base = self._ancestry(qid, depth - 1)
        first = base.child("same", 0, 3)
        self._made.append(self._data(topic, first, "conflicting-count"))
        second = base.child("same", 1, 5)
        return self._data(topic, second, "conflicting-count")

    def _end_marker(self, topic: str, qid: str) -> Bad:
        depth = max(0, self.topics[topic] - 1)
        count = self.rng.choice([2, 300_000])
        marker = self._ancestry(qid, depth).end_marker("e", count)
        _, headers = self.codec.encode(Envelope(marker, None, None, "fuzz"))
        return Bad("end-marker", topic, None, headers, qid)

    def _marker_with_value(self, topic: str, qid: str) -> Bad:
        marker = self._ancestry(qid, self.topics[topic]).marker(Kind.SKIP, "dropped")
        _, headers = self.codec.encode(Envelope(marker, None, None, "fuzz"))
        return Bad("marker-with-value", topic, b"\x02hi", headers, qid)

    def _orphan(self, topic: str, qid: str) -> Bad:
        ancestry = self._ancestry(qid, self.topics[topic], count=self.rng.random() < 0.5)
        return self._data(topic, ancestry, "orphan")

    def _wrong_depth(self, topic: str, qid: str) -> Bad:
        depth = self.topics[topic] + self.rng.choice([-1, 1, 2])
        return self._data(topic, self._ancestry(qid, max(0, depth)), "wrong-depth")
