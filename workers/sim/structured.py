"""Replies to requests with a `response_format`: valid JSON, following a given json_schema.

    {"type": "text"} or none        the simulator's usual words (not handled here)
    {"type": "json_object"}         an object whose keys are the "quoted_names" of the
                                    request's messages (a boolean for `needs_*`/`is_*`
                                    names, else words); {"text": words} when none is quoted
    {"type": "json_schema", ...}    a value following the schema: objects (every property),
                                    strings (words), booleans, enums, numbers, arrays
    anything else                   `Unsupported` (the server answers 400 saying why)

Deterministic per request: every choice is drawn from a SHAKE-128 stream of the request's
fingerprint. A boolean named `needs_revision` (a judge's verdict) is false with probability
`pass_rate` (`--pass-rate`); it depends only on the request's bytes, so the simulator cannot
know which of the bench's modes is "better". Other booleans are true half the time; an enum
(a preference between A and B) picks each option equally often.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import msgspec

from workers.sim.text import VOCAB

PASS_FIELD = "needs_revision"
_QUOTED = re.compile(r'"([a-z][a-z0-9_]{1,40})"')
_MAX_DEPTH = 6


class Unsupported(ValueError):
    """A `response_format` the simulator cannot honour."""


class _Message(msgspec.Struct):
    content: str | None = None


class _Formatted(msgspec.Struct):
    messages: list[_Message] = []
    response_format: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(_Formatted)


def schema_of(body: bytes) -> dict[str, Any] | None:
    """The JSON schema a reply to `body` must follow (None: plain text), or `Unsupported`."""
    try:
        request = _decoder.decode(body)
    except msgspec.DecodeError:
        return None  # the request decoder reports malformed bodies
    fmt = request.response_format
    kind = None if fmt is None else fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_schema":
        spec = (fmt or {}).get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise Unsupported("response_format json_schema needs json_schema.schema (an object)")
        return schema
    if kind == "json_object":
        text = "\n".join(m.content or "" for m in request.messages)
        names = list(dict.fromkeys(_QUOTED.findall(text))) or ["text"]
        return {"type": "object", "properties": {n: {"type": _kind(n)} for n in names}}
    raise Unsupported(
        f"response_format type {kind!r} is not supported (text, json_object, json_schema)"
    )


def _kind(name: str) -> str:
    return "boolean" if name.startswith(("needs_", "is_")) else "string"


def json_reply(schema: dict[str, Any], fp: bytes, index: int, pass_rate: float) -> tuple[str, int]:
    """(JSON text, completion tokens) of choice `index`."""
    stream = _bytes(fp + b"json" + index.to_bytes(4, "little"))
    value = _value(schema, stream, pass_rate, "", 0)
    text = msgspec.json.encode(value).decode()
    return text, max(1, len(text) // 6)


def _bytes(seed: bytes) -> Iterator[int]:
    block = 0
    while True:
        yield from hashlib.shake_128(seed + block.to_bytes(4, "little")).digest(256)
        block += 1


def _value(
    schema: dict[str, Any], stream: Iterator[int], pass_rate: float, name: str, depth: int
) -> Any:
    if schema.get("enum"):
        options = list(schema["enum"])
        return options[next(stream) % len(options)]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind in ("object", "array") and depth < _MAX_DEPTH:
        return _container(kind, schema, stream, pass_rate, name, depth)
    if kind == "boolean":
        draw = (next(stream) << 8 | next(stream)) / 65536.0
        return draw >= pass_rate if name == PASS_FIELD else draw < 0.5
    if kind in ("integer", "number"):
        return next(stream) % 11
    if kind == "null":
        return None
    return " ".join(VOCAB[next(stream)] for _ in range(6 + next(stream) % 19))


def _container(
    kind: str,
    schema: dict[str, Any],
    stream: Iterator[int],
    pass_rate: float,
    name: str,
    depth: int,
) -> Any:
    if kind == "object":
        props = schema.get("properties") or {}
        return {
            key: _value(sub if isinstance(sub, dict) else {}, stream, pass_rate, key, depth + 1)
            for key, sub in props.items()
        }
    item = schema.get("items")
    item = item if isinstance(item, dict) else {}
    return [_value(item, stream, pass_rate, name, depth + 1) for _ in range(1 + next(stream) % 3)]
