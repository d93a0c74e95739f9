"""``python -m benchmarks.engine``: run the EMULATED GPU serving engine until interrupted."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import socket
from collections.abc import Callable
from typing import Any

from benchmarks.engine import EmulatedEngine, EngineConfig

log = logging.getLogger("benchmarks.engine")


def _span(text: str) -> tuple[int, int]:
    """``"2-6"`` -> (2, 6)."""
    low, _, high = text.partition("-")
    try:
        span = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI, e.g. 2-6, got {text!r}") from None
    if not 1 <= span[0] <= span[1]:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI, got {text!r}")
    return span


_FLAGS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("--capacity", "capacity", int, "requests running at once"),
    ("--first-token", "first_token", float, "seconds from admission to the first token"),
    ("--token-rate", "token_rate", float, "tokens/s of one request running alone"),
    ("--slowdown", "slowdown", float, "per-token time grows by this fraction at a full batch"),
    ("--prefill-rate", "prefill_rate", float, "prompt tokens/s of prefill"),
    ("--max-queue", "max_queue", int, "HTTP 429 when this many wait; 0: unbounded"),
    ("--max-tokens", "default_max_tokens", int, "max_tokens of a request without one"),
    ("--sentences", "sentences", _span, "an answer's sentences, LO-HI, drawn uniformly"),
    ("--items", "items", _span, "a list's items, LO-HI"),
    ("--seed", "seed", int, "the text's seed"),
    ("--model", "model", str, "the model name served (keep 'emulated' in it)"),
)
"""Each flag, the :class:`EngineConfig` field it sets, its type and its help."""


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.engine``: serve until interrupted."""
    import uvicorn

    defaults = EngineConfig()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine",
        description="An EMULATED GPU serving engine (OpenAI-compatible; no model, no GPU).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    for flag, name, kind, text in _FLAGS:
        default = getattr(defaults, name)
        shown = "-".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=default,
            metavar=flag[2:].upper(),
            help=f"{text} (default {shown})",
        )
    parser.add_argument(
        "--fifo",
        action="store_true",
        help="ignore the priority field: arrival order, as llama_cpp.server and Ollama do",
    )
    args = parser.parse_args(argv)
    try:
        config = EngineConfig(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(EngineConfig)}
        )
    except ValueError as exc:
        flag = next((f for f, name, _, _ in _FLAGS if str(exc).startswith(name)), "")
        parser.error(f"{flag}: {exc}" if flag else str(exc))
    # Bound here, so that the address logged is the one served (--port 0: a free one).
    sock = socket.create_server((args.host, args.port))
    port = sock.getsockname()[1]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info(
        "EMULATED GPU serving engine (no model, no GPU) on http://%s:%d/v1: %s",
        args.host,
        port,
        config,
    )
    server = uvicorn.Server(uvicorn.Config(EmulatedEngine(config).app, log_level="warning"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
