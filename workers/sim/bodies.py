"""Response bodies of the simulator: OpenAI error bodies, completions, deliberately broken ones.

Everything that does not depend on the request is encoded once, at import.
"""

from __future__ import annotations

from schemas.openai import ChatResponse, ErrorBody, ErrorDetail, ModelCard, ModelList, json_encoder
from workers.sim.faults import Fault

JSON = "application/json"


def error_body(message: str, type_: str, code: str, param: str | None = None) -> bytes:
    """`{"error": {"message", "type", "code"[, "param"]}}` as OpenAI sends it."""
    return json_encoder.encode(ErrorBody(ErrorDetail(message, type_, code, param)))


OUTAGE = error_body("service unavailable (simulated outage)", "server_error", "service_unavailable")
SERVER_ERROR = error_body("internal server error (simulated)", "server_error", "internal_error")
OVERLOADED = error_body(
    "the engine is currently overloaded (simulated)", "server_error", "service_unavailable"
)
SHUTTING_DOWN = error_body("the simulator is shutting down", "server_error", "shutting_down")
HUNG = error_body("upstream timed out (simulated hang)", "server_error", "timeout")
RATE_LIMITED = error_body(
    "rate limit reached for requests (simulated)", "requests", "rate_limit_exceeded"
)


def over_limit(wait_s: float | None) -> bytes:
    """A 429's body; without `wait_s` (a bare 429) it does not say when to come back either."""
    later = "" if wait_s is None else f": please try again in {wait_s:.3f}s"
    return error_body(f"rate limit reached{later}", "requests", "rate_limit_exceeded")


INVALID_API_KEY = error_body(
    "Incorrect API key provided. You can find your API key in your account settings.",
    "invalid_request_error",
    "invalid_api_key",
)


def model_not_found(model: str) -> bytes:
    return error_body(
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def model_list(models: tuple[str, ...]) -> bytes:
    return json_encoder.encode(ModelList(data=[ModelCard(id=m) for m in models]))


# ChatResponse omits fields equal to their defaults, so `object` ("chat.completion") is never
# encoded; OpenAI clients expect it, so it is prepended to the encoded object.
_OBJECT_PREFIX = b'{"object":"chat.completion",'


def completion_body(response: ChatResponse) -> bytes:
    """The JSON of a chat.completion, built without `object` (its default) by the caller."""
    return _OBJECT_PREFIX + json_encoder.encode(response)[1:]


_NOT_JSON = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"


def malformed_body(fault: Fault, valid: bytes, request_id: str) -> tuple[bytes, str]:
    """(body, content type) of a 200 response that is not a valid completion."""
    if fault is Fault.TRUNCATED_JSON:
        return valid[: len(valid) // 2], JSON
    if fault is Fault.NOT_JSON:
        return _NOT_JSON, "text/html"
    # Fault.NO_CHOICES: well-formed JSON, but without the required `choices`.
    return b'{"id":"chatcmpl-' + request_id.encode() + b'","object":"chat.completion"}', JSON
