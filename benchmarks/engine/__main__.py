"""``python -m benchmarks.engine``: run the EMULATED GPU serving engine until interrupted."""

from __future__ import annotations

import argparse
import logging

from benchmarks.engine import EmulatedEngine, EngineConfig

log = logging.getLogger("benchmarks.engine")


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
    parser.add_argument(
        "--capacity",
        type=int,
        default=defaults.capacity,
        help="requests running at once (default %(default)s)",
    )
    parser.add_argument(
        "--first-token",
        type=float,
        default=defaults.first_token,
        help="seconds from admission to the first token, before prefill (default %(default)s)",
    )
    parser.add_argument(
        "--token-rate",
        type=float,
        default=defaults.token_rate,
        help="tokens/s of one request running alone (default %(default)s)",
    )
    parser.add_argument(
        "--slowdown",
        type=float,
        default=defaults.slowdown,
        help="per-token time grows by this fraction at a full batch (default %(default)s)",
    )
    parser.add_argument(
        "--prefill-rate",
        type=float,
        default=defaults.prefill_rate,
        help="prompt tokens/s of prefill (default %(default)s)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=defaults.max_queue,
        help="HTTP 429 when this many wait; 0: unbounded (default)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=defaults.default_max_tokens,
        help="max_tokens of a request without one (default %(default)s)",
    )
    parser.add_argument(
        "--sentences",
        type=_span,
        default=defaults.sentences,
        help="an answer's sentences, LO-HI, drawn uniformly (default 2-6)",
    )
    parser.add_argument(
        "--items", type=_span, default=defaults.items, help="a list's items, LO-HI (default 2-4)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--model", default=defaults.model, help="the model name served (keep 'emulated' in it)"
    )
    args = parser.parse_args(argv)
    config = EngineConfig(
        capacity=args.capacity,
        first_token=args.first_token,
        token_rate=args.token_rate,
        slowdown=args.slowdown,
        prefill_rate=args.prefill_rate,
        max_queue=args.max_queue,
        default_max_tokens=args.max_tokens,
        sentences=args.sentences,
        items=args.items,
        seed=args.seed,
        model=args.model,
    )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info(
        "EMULATED GPU serving engine (no model, no GPU) on http://%s:%d/v1: %s",
        args.host,
        args.port,
        config,
    )
    uvicorn.run(EmulatedEngine(config).app, host=args.host, port=args.port, log_level="warning")


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


if __name__ == "__main__":
    main()
