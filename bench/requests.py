"""Synthetic OpenAI Batch API request files for benchmarks and tests."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

_encoder = msgspec.json.Encoder()
_WORDS = [
    "should",
    "people",
    "value",
    "tradition",
    "family",
    "freedom",
    "fairness",
    "community",
    "faith",
    "science",
    "work",
    "health",
    "money",
    "climate",
    "privacy",
    "safety",
    "honesty",
    "loyalty",
    "justice",
    "kindness",
    "ambition",
    "duty",
]


def request_line(index: int, model: str = "sim-small", max_tokens: int = 64) -> bytes:
    """One request line; the prompt is derived from the index (about 60 words)."""
    words = " ".join(_WORDS[(index * 7 + k * 3) % len(_WORDS)] for k in range(60))
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Question {index}: {words}?"},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.7,
    }
    line = {"custom_id": f"req-{index:07d}", "method": "POST", "url": "/v1/chat/completions"}
    return _encoder.encode({**line, "body": body}) + b"\n"


def write_requests(path: Path, n: int, model: str = "sim-small", max_tokens: int = 64) -> Path:
    """Write n distinct requests, streamed (constant memory)."""
    with path.open("wb") as handle:
        for start in range(0, n, 10_000):
            chunk = (
                request_line(i, model, max_tokens) for i in range(start, min(n, start + 10_000))
            )
            handle.write(b"".join(chunk))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m bench.requests",
        description="write a synthetic Batch API request file",
    )
    parser.add_argument("--n", type=int, default=2000, help="number of requests")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="sim-small")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    write_requests(args.out, args.n, args.model, args.max_tokens)
    print(f"wrote {args.n} requests to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
