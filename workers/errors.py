"""What can go wrong with one call, as classes. Decisions are made by class, never by text.

    ProviderError
    ├── RetryableError               the same request may succeed later
    │   ├── RateLimited               429 (retry_after_s from Retry-After / retry-after-ms)
    │   ├── ServerError               408, 409, 5xx
    │   ├── TransportError            connection refused / reset / closed mid-body
    │   │   └── CallTimeout           no complete answer within the per-request timeout
    │   │       └── CallAbandoned     cut off by the adaptive deadline (may be paid twice)
    │   └── MalformedResponse         200 with a body that is not a chat completion
    │       ├── EmptyChoices          a well-formed completion with no choices
    │       └── InvalidOutput         a completion that misses its stage's output format
    └── PermanentError               400, 401, 403, 404, 422, other 4xx: the job fails at once
        └── ContentRefused            a 200 whose every choice was withheld by the provider's
                                      filter (finish_reason "content_filter") or refused by
                                      the model (`message.refusal`): asking again gives the
                                      same answer, so it fails at once with that reason

`is_outage_like` marks the failures a circuit breaker counts as "the API is down".
"""

from __future__ import annotations


class ProviderError(Exception):
    """A call did not produce a usable completion."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.during_outage = False  # set by the dispatcher when the breaker was open


class RetryableError(ProviderError):
    """The same request may succeed later."""

    retry_after_s: float | None = None


class RateLimited(RetryableError):
    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None,
        status_code: int | None = 429,
        body: str | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message, status_code=status_code, body=body, request_id=request_id)
        self.retry_after_s = retry_after_s


class ServerError(RetryableError):
    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after_s: float | None = None,
        body: str | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message, status_code=status_code, body=body, request_id=request_id)
        self.retry_after_s = retry_after_s


class TransportError(RetryableError):
    """The connection failed: refused, reset, or closed before the body was complete."""


class CallTimeout(TransportError):
    """No complete response within the per-request timeout."""


class CallAbandoned(CallTimeout):
    """Abandoned by the adaptive deadline: it ran far beyond calls like it (workers/deadline.py).
    The provider may still finish and bill it, so the retry risks paying twice: counted."""


class MalformedResponse(RetryableError):
    """A 200 whose body is not a chat completion (truncated, not JSON, wrong shape)."""


class EmptyChoices(MalformedResponse):
    """A chat completion with no choices."""


class InvalidOutput(MalformedResponse):
    """A completion that does not follow its stage's output format (raw text in `body`)."""


class PermanentError(ProviderError):
    """The provider refused the request itself; retrying cannot help."""


class ContentRefused(PermanentError):
    """Every choice was filtered or refused; the completion is kept in `body`."""


RETRYABLE_STATUS = frozenset({408, 409, 429})


def error_for_status(
    status: int, body: str, request_id: str, retry_after_s: float | None
) -> ProviderError:
    """The error class for a non-2xx HTTP status (pure)."""
    message = f"HTTP {status}"
    if status == 429:
        return RateLimited(message, retry_after_s=retry_after_s, body=body, request_id=request_id)
    if status in RETRYABLE_STATUS or status >= 500:
        return ServerError(
            message,
            status_code=status,
            retry_after_s=retry_after_s,
            body=body,
            request_id=request_id,
        )
    return PermanentError(message, status_code=status, body=body, request_id=request_id)


def is_outage_like(error: ProviderError) -> bool:
    """Failures that, when they dominate, mean the API is down rather than one bad request."""
    if isinstance(error, ServerError):
        return error.status_code is not None and error.status_code >= 500
    return isinstance(error, TransportError)
