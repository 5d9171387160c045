"""The OpenAI chat-completions shapes the engine and the simulator need.

Tolerant of extra fields (providers add their own), strict about the ones we read.
"""

from __future__ import annotations

from typing import Any

import msgspec


class ChatMessage(msgspec.Struct, omit_defaults=True, gc=False):
    role: str
    content: str | None = None
    refusal: str | None = None  # the model declined (structured outputs); content is empty


class ChatRequest(msgspec.Struct, omit_defaults=True, gc=False):
    """The part of a chat-completions request body the engine reads.

    The body itself is forwarded verbatim (canonicalised), so unknown fields survive.
    """

    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    seed: int | None = None


class Usage(msgspec.Struct, omit_defaults=True, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Choice(msgspec.Struct, omit_defaults=True, gc=False):
    index: int
    message: ChatMessage
    finish_reason: str | None = None


class ChatResponse(msgspec.Struct, omit_defaults=True, gc=False):
    id: str
    choices: list[Choice]
    model: str = ""
    object: str = "chat.completion"
    created: int = 0
    usage: Usage | None = None


class ErrorDetail(msgspec.Struct, omit_defaults=True, gc=False):
    message: str
    type: str = "error"
    code: str | None = None
    param: str | None = None


class ErrorBody(msgspec.Struct, gc=False):
    error: ErrorDetail


class ModelCard(msgspec.Struct, gc=False):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "persona-testbed"


class ModelList(msgspec.Struct, gc=False):
    data: list[ModelCard]
    object: str = "list"


chat_request_decoder = msgspec.json.Decoder(ChatRequest)
chat_response_decoder = msgspec.json.Decoder(ChatResponse)
error_body_decoder = msgspec.json.Decoder(ErrorBody)
json_encoder = msgspec.json.Encoder()
any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
