"""Rate limits and the outage breaker: pure asyncio logic on an injectable clock, no I/O."""

from ratelimits.backoff import exponential_backoff, parse_retry_after, retry_delay
from ratelimits.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Outcome,
    Permit,
    PermitUsedError,
)
from ratelimits.clock import Clock, FakeClock, LoopClock, TimerHandle
from ratelimits.limiter import (
    LimitConfig,
    LimiterRegistry,
    LimitsConfig,
    ModelLimits,
    RateLimiter,
    Reservation,
    ReservationSettledError,
    ResetFormatError,
    parse_reset,
)

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "Clock",
    "FakeClock",
    "LimitConfig",
    "LimiterRegistry",
    "LimitsConfig",
    "LoopClock",
    "ModelLimits",
    "Outcome",
    "Permit",
    "PermitUsedError",
    "RateLimiter",
    "Reservation",
    "ReservationSettledError",
    "ResetFormatError",
    "TimerHandle",
    "exponential_backoff",
    "parse_reset",
    "parse_retry_after",
    "retry_delay",
]
