"""`stream: true`: the completion as server-sent events, as OpenAI sends them.

One `chat.completion.chunk` with the role, then the content a few words per chunk, then one
with the finish reason; with `stream_options.include_usage` a last chunk with empty choices
and the usage; then `data: [DONE]`. The whole stream is one response body (the latency has
already been served), which the openai SDK and any SSE reader parse chunk by chunk.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.openai import chat_response_decoder

CONTENT_TYPE = "text/event-stream"
WORDS_PER_CHUNK = 4


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _Streamed(msgspec.Struct):
    stream: bool = False
    stream_options: _StreamOptions | None = None


_decoder = msgspec.json.Decoder(_Streamed)
_encoder = msgspec.json.Encoder()


def wants_stream(body: bytes) -> tuple[bool, bool]:
    """(stream, include usage) asked by a request body."""
    if b'"stream"' not in body:  # the common case, without a second decode
        return False, False
    try:
        request = _decoder.decode(body)
    except msgspec.DecodeError:
        return False, False
    usage = request.stream_options is not None and request.stream_options.include_usage
    return request.stream, usage


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + _encoder.encode(data) + b"\n\n"


def sse_body(completion: bytes, include_usage: bool) -> bytes:
    """The chunks of the encoded chat.completion `completion`."""
    response = chat_response_decoder.decode(completion)
    head = {
        "id": response.id,
        "object": "chat.completion.chunk",
        "created": response.created,
        "model": response.model,
    }
    events: list[bytes] = []
    for choice in response.choices:
        index = choice.index
        delta: dict[str, Any] = {"role": "assistant", "content": ""}
        events.append(_event({**head, "choices": [{"index": index, "delta": delta}]}))
        words = (choice.message.content or "").split(" ")
        for start in range(0, len(words), WORDS_PER_CHUNK):
            piece = " ".join(words[start : start + WORDS_PER_CHUNK])
            text = piece if start == 0 else " " + piece
            events.append(
                _event({**head, "choices": [{"index": index, "delta": {"content": text}}]})
            )
        end = {"index": index, "delta": {}, "finish_reason": choice.finish_reason}
        events.append(_event({**head, "choices": [end]}))
    if include_usage and response.usage is not None:
        events.append(_event({**head, "choices": [], "usage": msgspec.to_builtins(response.usage)}))
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)
