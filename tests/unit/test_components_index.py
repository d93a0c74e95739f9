"""Index pieces without a model: chunking, corpora, manifests and refusals, exact top-k search.

The embedder here is a double (a hashed bag of words): these tests are about the
index's own logic. The real model's tests are in tests/e2e/test_retrieval_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

np = pytest.importorskip("numpy", reason="numpy comes with the ml extra: pip install -e '.[ml]'")

from alto_stream.components.index import (  # noqa: E402
    Corpus,
    Document,
    IndexRefusedError,
    Manifest,
    ModelMismatchError,
    Retriever,
    StaleIndexError,
    build_index,
    chunk_text,
    load_corpus,
    open_index,
    up_to_date,
)
from alto_stream.components.index.corpus import corpus_hash, sentences  # noqa: E402
from alto_stream.components.index.store import Index, forget  # noqa: E402
from alto_stream.errors import ConfigError  # noqa: E402


class HashEmbedder:
    """A bag of hashed words, normalised: texts sharing words score high. Counts its calls."""

    def __init__(self, name: str = "hash-words", dimension: int = 64) -> None:
        self.name = name
        self.backend = "test"
        self.dimension = dimension
        self.device = "cpu"
        self.calls = 0

    def load(self) -> None:
        return None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = hashlib.sha256(word.strip(".,?!").encode()).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dimension] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.clip(norms, 1e-12, None)


DOCS = [
    {
        "id": "cat",
        "title": "Cat",
        "text": "The cat is a small furry animal. It purrs.",
        "lang": "en",
    },
    {"id": "dog", "title": "Dog", "text": "The dog is a loyal animal. It barks at night."},
    {"id": "sun", "title": "Sun", "text": "The sun is a star. Its light warms the planet."},
    {"id": "oak", "title": "Oak", "text": "The oak is a tree with acorns and hard wood."},
]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    forget()


def write_corpus(path: Path, docs: list[dict[str, object]] = DOCS) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def built(tmp_path: Path, passage_words: int = 120) -> tuple[Path, Path, HashEmbedder]:
    corpus_file = write_corpus(tmp_path / "corpus.jsonl")
    embedder = HashEmbedder()
    out = tmp_path / "idx"
    build_index(load_corpus(corpus_file), out, embedder=embedder, passage_words=passage_words)
    return corpus_file, out, embedder


# -- chunking -------------------------------------------------------------------------------------


def test_sentences_keep_abbreviations_initials_decimals_and_quotes_whole() -> None:
    text = 'Dr. Smith met J. R. R. Tolkien. Pi is 3.14 today! He said "Hi." Then (Yes.) the end'
    assert sentences(text) == [
        "Dr. Smith met J. R. R. Tolkien.",
        "Pi is 3.14 today!",
        'He said "Hi."',
        "Then (Yes.) the end",
    ]


def test_chunks_pack_whole_sentences_up_to_the_word_limit() -> None:
    text = "One two three. Four five. Six seven eight nine. Ten."
    assert chunk_text(text, 5) == ["One two three. Four five.", "Six seven eight nine. Ten."]
    assert chunk_text(text, 100) == [text]


def test_a_sentence_longer_than_a_passage_is_cut_by_words() -> None:
    text = "One two three four five six seven. Eight nine. Ten eleven."
    assert chunk_text(text, 3) == [
        "One two three",
        "four five six",
        "seven. Eight nine.",
        "Ten eleven.",
    ]
    with pytest.raises(ConfigError, match="at least 1"):
        chunk_text("a", 0)


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(["word", "Dr.", "end.", "Why?", "3.5", "U.S.", "A.", '"Hi."', "x!"]),
        max_size=60,
    ),
    limit=st.integers(1, 12),
)
def test_chunking_keeps_every_word_in_order_within_the_limit(words: list[str], limit: int) -> None:
    text = " ".join(words)
    passages = chunk_text(text, limit)
    assert " ".join(passages).split() == text.split()
    assert all(0 < len(p.split()) <= limit for p in passages)


# -- corpora --------------------------------------------------------------------------------------


def test_a_jsonl_corpus_keeps_other_fields_as_metadata(tmp_path: Path) -> None:
    corpus = load_corpus(write_corpus(tmp_path / "c.jsonl"))
    assert [d.id for d in corpus.documents] == ["cat", "dog", "sun", "oak"]
    assert corpus.documents[0].meta == {"lang": "en"}
    assert corpus.source == str((tmp_path / "c.jsonl").resolve())
    assert load_corpus(tmp_path / "c.jsonl", limit=2).documents == corpus.documents[:2]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "c.jsonl:2: not JSON"),
        ('["a list"]', "c.jsonl:2: expected a JSON object"),
        ('{"id": "x", "title": "X"}', "c.jsonl:2: missing or not a string: text"),
        ('{"title": "X", "text": "t"}', "c.jsonl:2: missing or not a string: id"),
    ],
)
def test_a_bad_corpus_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(DOCS[0]) + "\n" + line + "\n")
    with pytest.raises(ConfigError, match=message):
        load_corpus(path)


def test_duplicate_ids_and_empty_corpora_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="appears twice"):
        load_corpus(write_corpus(tmp_path / "d.jsonl", [DOCS[0], DOCS[0]]))
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match="no documents"):
        load_corpus(tmp_path / "e.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        load_corpus(tmp_path / "missing.jsonl")


def test_the_corpus_hash_changes_with_any_text() -> None:
    docs = [Document("a", "A", "text"), Document("b", "B", "more")]
    changed = [Document("a", "A", "text"), Document("b", "B", "more!")]
    assert corpus_hash(docs) == corpus_hash(list(docs))
    assert corpus_hash(docs) != corpus_hash(changed)
    assert corpus_hash(docs) != corpus_hash(reversed(docs))


# -- search ---------------------------------------------------------------------------------------


def synthetic_index(tmp_path: Path, vectors: np.ndarray) -> Index:
    """An index written by hand around ``vectors`` (rows normalised here)."""
    unit = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    np.save(tmp_path / "vectors.npy", unit)
    rows = [
        {"id": f"d{i}#0", "doc_id": f"d{i}", "title": f"T{i}", "text": f"x{i}", "meta": {}}
        for i in range(len(unit))
    ]
    (tmp_path / "passages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = Manifest("m", "test", unit.shape[1], "c", "0" * 64, len(unit), len(unit), 50)
    (tmp_path / "manifest.json").write_text(manifest.to_json())
    return open_index(tmp_path)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 40),
    k=st.integers(0, 50),
)
def test_top_k_is_the_exact_best_k_by_cosine(seed: int, rows: int, k: int) -> None:
    import tempfile

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(rows, 8))
    query = rng.normal(size=8)
    query /= np.linalg.norm(query)
    with tempfile.TemporaryDirectory() as tmp:
        forget()
        index = synthetic_index(Path(tmp), vectors)
        [found] = index.search(query.astype(np.float32), k)
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        expected = np.argsort(-(unit @ query), kind="stable")[: min(k, rows)]
        assert [p.doc_id for p in found] == [f"d{i}" for i in expected]
        scores = [p.score for p in found]
        assert scores == sorted(scores, reverse=True)
        assert all(-1.0001 <= s <= 1.0001 for s in scores)


def test_search_takes_several_queries_and_checks_their_dimension(tmp_path: Path) -> None:
    index = synthetic_index(tmp_path, np.eye(4))
    found = index.search(np.eye(4, dtype=np.float32)[[2, 0]], 1)
    assert [[p.doc_id for p in f] for f in found] == [["d2"], ["d0"]]
    assert found[0][0].score == pytest.approx(1.0)
    with pytest.raises(ModelMismatchError, match="3 dimensions"):
        index.search(np.ones((1, 3), dtype=np.float32), 1)


def test_the_vectors_are_memory_mapped_and_opened_once_per_process(tmp_path: Path) -> None:
    index = synthetic_index(tmp_path, np.eye(3))
    assert isinstance(index.vectors, np.memmap)
    assert not index.vectors.flags.writeable
    assert open_index(tmp_path) is index


# -- build, manifest, refusals --------------------------------------------------------------------


def test_build_writes_vectors_passages_and_a_manifest(tmp_path: Path) -> None:
    corpus_file, out, embedder = built(tmp_path, passage_words=5)
    manifest = Manifest.read(out)
    corpus = load_corpus(corpus_file)
    assert (manifest.model, manifest.dimension, manifest.documents) == ("hash-words", 64, 4)
    assert manifest.corpus_sha256 == corpus.sha256
    vectors = np.load(out / "vectors.npy")
    assert vectors.dtype == np.float32 and vectors.shape == (manifest.passages, 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    rows = [json.loads(line) for line in (out / "passages.jsonl").read_text().splitlines()]
    assert rows[0] == {
        "id": "cat#0",
        "doc_id": "cat",
        "title": "Cat",
        "text": "The cat is a small",
        "meta": {"lang": "en"},
    }
    assert manifest.passages == len(rows) > 4  # 5 words per passage: documents were cut
    assert up_to_date(out, corpus, embedder, 5)
    assert not up_to_date(out, corpus, embedder, 6)
    assert not up_to_date(out, corpus, HashEmbedder("other"), 5)


def test_a_retriever_finds_the_document_that_shares_the_words(tmp_path: Path) -> None:
    _, out, embedder = built(tmp_path)
    retriever = Retriever(out, embedder=embedder, k=2)
    [best, second] = retriever.search("which animal barks at night")
    assert best.title == "Dog" and best.score > second.score
    assert [r[0].doc_id for r in retriever.search_many(["acorns tree", "star light"])] == [
        "oak",
        "sun",
    ]


def test_a_query_embedder_of_another_model_is_refused(tmp_path: Path) -> None:
    _, out, _ = built(tmp_path)
    with pytest.raises(ModelMismatchError, match=r"built with model 'hash-words'.*'other'"):
        Retriever(out, embedder=HashEmbedder("other")).open()
    with pytest.raises(ModelMismatchError, match="64-dimensional"):
        Retriever(out, embedder=HashEmbedder("hash-words", dimension=32)).open()


def test_an_index_whose_corpus_changed_is_refused_as_stale(tmp_path: Path) -> None:
    corpus_file, out, embedder = built(tmp_path)
    edited = [*DOCS[:3], {**DOCS[3], "text": "The oak is a tree."}]
    write_corpus(corpus_file, edited)
    with pytest.raises(StaleIndexError, match=r"stale.*changed since the build.*index build"):
        Retriever(out, embedder=embedder).open()
    # Asked not to check, it serves the old vectors; rebuilt, it is fresh again.
    assert Retriever(out, embedder=embedder, check_corpus=False).search("oak")[0].doc_id == "oak"
    forget()
    build_index(load_corpus(corpus_file), out, embedder=embedder)
    assert Retriever(out, embedder=embedder).search("oak tree")[0].text == "The oak is a tree."


def test_a_gone_corpus_file_is_not_a_reason_to_refuse(tmp_path: Path) -> None:
    corpus_file, out, embedder = built(tmp_path)
    corpus_file.unlink()
    assert Retriever(out, embedder=embedder).search("purrs")[0].doc_id == "cat"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "manifest.json").unlink(), "is not an index"),
        (lambda d: (d / "manifest.json").write_text("{"), "not a manifest"),
        (lambda d: _patch_manifest(d, format=99), "format 99"),
        (lambda d: _patch_manifest(d, passages=3), r"\(4, 64\), the manifest says float32 \(3"),
        (lambda d: _drop_last_passage(d), "has 3 passages, the manifest says 4"),
        (lambda d: _patch_manifest(d, dimension=32), "manifest says float32"),
        (lambda d: (d / "passages.jsonl").unlink(), "no passages.jsonl"),
        (lambda d: (d / "vectors.npy").write_bytes(b"junk"), "cannot read vectors.npy"),
        (lambda d: (d / "vectors.npy").write_bytes(b""), "cannot read vectors.npy"),
        (lambda d: _append_passage_line(d, b"{not json\n"), "line 5 of passages.jsonl is not JSON"),
        (lambda d: _append_passage_line(d, b"\xff\xfe\n"), "line 5 of passages.jsonl is not JSON"),
        (lambda d: _append_passage_line(d, b"[1, 2]\n"), "line 5 of passages.jsonl is not a"),
        (lambda d: _append_passage_line(d, b'{"id": "x"}\n'), "line 5 of passages.jsonl is not a"),
    ],
)
def test_a_damaged_index_is_refused_with_the_fix(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = built(tmp_path)
    damage(out)
    with pytest.raises(IndexRefusedError, match=message):
        open_index(out)


def test_an_index_folder_that_does_not_exist_is_named_so(tmp_path: Path) -> None:
    with pytest.raises(IndexRefusedError, match="does not exist; fix: alto-stream index build"):
        Retriever(tmp_path / "nowhere", embedder=HashEmbedder()).search("x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexRefusedError, match=r"is not an index \(no manifest.json\)"):
        Retriever(tmp_path / "empty", embedder=HashEmbedder()).search("x")


def _append_passage_line(directory: Path, line: bytes) -> None:
    with (directory / "passages.jsonl").open("ab") as passages:
        passages.write(line)


def _drop_last_passage(directory: Path) -> None:
    lines = (directory / "passages.jsonl").read_text().splitlines(keepends=True)
    (directory / "passages.jsonl").write_text("".join(lines[:-1]))


def _patch_manifest(directory: Path, **changes: object) -> None:
    data = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**data, **changes}))


def test_a_failed_build_leaves_the_previous_index_whole(tmp_path: Path) -> None:
    corpus_file, out, _ = built(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    class Failing(HashEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        build_index(load_corpus(corpus_file), out, embedder=Failing())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "idx"]


def test_build_does_not_overwrite_a_directory_that_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    corpus = Corpus("c", (Document("a", "A", "text"),), "0" * 64)
    with pytest.raises(IndexRefusedError, match="is not an index"):
        build_index(corpus, tmp_path / "precious", embedder=HashEmbedder())
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "years of work"


def test_build_reports_progress_up_to_every_passage(tmp_path: Path) -> None:
    docs = [{"id": str(i), "title": f"T{i}", "text": f"Document number {i}."} for i in range(600)]
    corpus = load_corpus(write_corpus(tmp_path / "many.jsonl", docs))
    seen: list[tuple[int, int]] = []
    build_index(
        corpus, tmp_path / "idx", embedder=HashEmbedder(), progress=lambda *a: seen.append(a)
    )
    assert seen == [(256, 600), (512, 600), (600, 600)]


def test_wiki_names_the_default_index_in_python_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: `alto-stream index search wiki ...` found the default index, but
    # Retriever("wiki") looked for ./wiki and told a new user to build a second one.
    from alto_stream.components.embed import DEFAULT_MODEL
    from alto_stream.components.index import Retriever
    from alto_stream.components.index.store import default_index_dir

    monkeypatch.chdir(tmp_path)
    assert Retriever("wiki").path == default_index_dir("wiki", DEFAULT_MODEL)
    (tmp_path / "wiki").mkdir()  # a folder of that name here is what it names
    assert Retriever("wiki").path == Path("wiki")
