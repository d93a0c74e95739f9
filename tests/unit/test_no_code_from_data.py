"""Nothing read from a topic (or anywhere) is run as code: no eval, exec, pickle and the like.

An AST scan of ``alto_stream/``, ``workers/``, ``benchmarks/`` and ``scripts/``
fails on any call that turns bytes or text into code or arbitrary objects:
``eval``/``exec``/``compile``, ``pickle``/``marshal``/``dill``/``shelve``
loading, ``yaml.load`` without a safe loader, ``numpy.load(allow_pickle=True)``
and ``torch.load`` without ``weights_only=True``. Records are decoded only by
the Avro codec (data, never code).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("alto_stream", "workers", "benchmarks", "scripts")

_BUILTINS = {"eval", "exec", "compile", "__import__", "execfile"}
_UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "dill", "shelve", "jsonpickle"}
_UNSAFE_CALLS = {
    ("pickle", "loads"), ("pickle", "load"), ("pickle", "Unpickler"),
    ("marshal", "loads"), ("marshal", "load"), ("dill", "loads"), ("dill", "load"),
    ("shelve", "open"), ("yaml", "unsafe_load"), ("yaml", "full_load"),
    ("yaml", "unsafe_load_all"), ("yaml", "full_load_all"), ("jsonpickle", "decode"),
}  # fmt: skip
_SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def problems_in(source: str, where: str) -> list[str]:
    """Every unsafe call or import in ``source`` (``where``:line what)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for name in [*names, module or ""]:
                if name.split(".")[0] in _UNSAFE_MODULES:
                    found.append(f"{line} imports {name}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        parts = name.split(".")
        builtin = name in _BUILTINS or name in {f"builtins.{b}" for b in _BUILTINS}
        if builtin or (len(parts) >= 2 and (parts[-2], parts[-1]) in _UNSAFE_CALLS):
            found.append(f"{line} calls {name}()")
        elif parts[-1] in ("load", "load_all") and parts[0] == "yaml":
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).split(".")[-1] not in _SAFE_YAML_LOADERS:
                found.append(f"{line} calls {name}() without a safe Loader")
        elif parts[-1] == "load" and parts[0] in ("np", "numpy"):
            if _is_true(_keyword(node, "allow_pickle")):
                found.append(f"{line} calls {name}(allow_pickle=True)")
        elif name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            found.append(f"{line} calls torch.load() without weights_only=True")
    return found


def test_no_code_or_pickle_is_loaded_anywhere_in_the_code() -> None:
    files = [p for d in SCANNED if (ROOT / d).is_dir() for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 100  # the scan found the code
    found = [
        problem
        for path in files
        for problem in problems_in(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "eval(record.value)",
        "exec(text)",
        "builtins.eval(x)",
        "compile(src, 'f', 'exec')",
        "import pickle\npickle.loads(b)",
        "from pickle import loads",
        "import marshal\nmarshal.loads(b)",
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)",
        "import yaml\nyaml.unsafe_load(text)",
        "np.load(path, allow_pickle=True)",
        "torch.load(path)",
        "__import__(name)",
    ],
)
def test_the_scan_catches(source: str) -> None:
    assert problems_in(source, "x.py"), source


@pytest.mark.parametrize(
    "source",
    [
        "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
        "import yaml\nyaml.safe_load(text)",
        "np.load(path, mmap_mode='r')",
        "torch.load(path, weights_only=True)",
        "re.compile(r'x')",
        "json.loads(text)",
        "model.eval()",
    ],
)
def test_the_scan_allows(source: str) -> None:
    assert problems_in(source, "x.py") == [], source
