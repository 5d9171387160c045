"""Requests-per-minute and tokens-per-minute budgets: FIFO, one timer, reserve then settle.

The model
---------
Each budget is a continuously refilling bucket: it refills at ``limit / 60`` units per second
up to a *capacity* of ``max(1, limit * burst_s / 60)`` (with ``burst_s = 1.0``: one second's
worth). A call takes one unit of the request bucket and its estimated token count from the
token bucket; the bounds below count a call's tokens as `settle` finally charges them.

Buckets start empty, so there is no burst at start: from a fresh limiter the units granted over
any window ``[0, W]`` are at most ``limit * W / 60``. The first call waits for both budgets:
``1 / rate`` for its request unit (10 ms at 6,000 RPM) and ``estimate / rate`` for its tokens.
A bucket left idle refills up to its capacity, so later any window of length ``W`` holds at
most ``limit * W / 60 + capacity``: after an idle spell, at most a capacity's worth (one
second's) goes at once. (aiolimiter's bucket starts full and holds a whole period, so it lets a
whole period through at once, at start and after every idle spell.)

Why one second of burst: providers enforce per-minute limits over shorter slices (OpenAI:
60,000 RPM "may be enforced as 1,000 requests per second"), so a second's worth is what the
provider accepts at once; a smaller capacity would serialise calls and leave every token
reservation above capacity; a larger one would let more than a second's worth through at once
after an idle spell. ``max(1, ...)``: a request costs one unit, so the request bucket must hold
at least one.

Calls dearer than the capacity (a 4,000-token prompt against a 1,000-token bucket) still pass:
they wait for a full bucket (from a fresh start ``capacity / rate``: ``burst_s``), then take
their whole cost, leaving it in debt (negative) until the refill repays it. The long-run rate
stays exact, which capping the cost would not give; the price is that one such call may exceed
either bound above by its own excess over the capacity.

Waiting
-------
Waiters queue first come, first served: a dear call at the head holds back cheap calls behind
it (no starvation). Exactly one timer is pending at a time, set with `Clock.call_at` for the
instant the head can go; it grants every waiter that fits, then sets the next one. No polling.

Reserve, then settle: `acquire(estimate)` returns a `Reservation`; `settle(actual)` gives the
unused estimate back to the token bucket (or charges the excess) when the response's `usage`
arrives.

Adaptation
----------
`observe_headers` lowers the buckets to what the provider reports (`x-ratelimit-remaining-*`)
and to its limit (`x-ratelimit-limit-*`), never above our configuration; `reset` tells how fast
the provider refills until then. `on_rate_limited` (a 429) pauses all dispatch until the
Retry-After (or a backoff) and multiplies the rate by `decrease_factor`, at most once per
`adapt_interval_s` (the 429s of one burst are one event); `on_success` adds `increase_step`
back, at most once per `adapt_interval_s`, until the configured rate (AIMD, as in TCP).

When a `RateLearner` (ratelimits/learned.py) steers the limiter, it sets the request rate with
`set_learned_rpm` (creating the request bucket if no RPM was configured) and pauses it with
`pause_for` (a Retry-After); the dispatcher then reports 429s and successes to the learner
instead of `on_rate_limited`/`on_success`, so there is one adaptation, not two.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections import deque
from typing import Annotated

import msgspec
import structlog
from msgspec import UNSET, Meta, UnsetType

from ratelimits.backoff import exponential_backoff
from ratelimits.clock import Clock, TimerHandle

log = structlog.get_logger()

PositiveFloat = Annotated[float, Meta(gt=0)]
UnitFraction = Annotated[float, Meta(gt=0, le=1)]

# A head this close to its time goes now: absorbs float rounding and timers firing a hair early.
_TIME_EPSILON_S = 1e-6


class LimitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One model's budgets (None = unlimited) and how the limiter adapts to the provider."""

    rpm: PositiveFloat | None = None
    tpm: PositiveFloat | None = None
    burst_s: PositiveFloat = 1.0
    decrease_factor: UnitFraction = 0.8
    min_rate_factor: UnitFraction = 0.1
    increase_step: Annotated[float, Meta(ge=0, le=1)] = 0.05
    adapt_interval_s: Annotated[float, Meta(ge=0)] = 2.0
    pause_base_s: Annotated[float, Meta(ge=0)] = 1.0
    pause_max_s: Annotated[float, Meta(ge=0)] = 60.0
    pause_jitter: Annotated[float, Meta(ge=0, le=1)] = 0.5


class ModelLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A per-model override: fields left unset come from the default `LimitConfig`."""

    rpm: PositiveFloat | UnsetType | None = UNSET
    tpm: PositiveFloat | UnsetType | None = UNSET
    burst_s: PositiveFloat | UnsetType = UNSET


class LimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    default: LimitConfig = LimitConfig()
    models: dict[str, ModelLimits] = msgspec.field(default_factory=dict)


class ReservationSettledError(RuntimeError):
    """A reservation was settled twice (or settled after its waiter was cancelled)."""

    def __init__(self, tokens: int) -> None:
        super().__init__(f"reservation of {tokens} tokens is already settled")
        self.tokens = tokens


class ResetFormatError(ValueError):
    """An `x-ratelimit-reset-*` value that is neither a number nor a Go-style duration."""

    def __init__(self, value: str) -> None:
        super().__init__(f"cannot read rate-limit reset {value!r}")
        self.value = value


_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str) -> float:
    """Seconds in an `x-ratelimit-reset-*` value: "1s", "6m0s", "120ms", "2m30.5s" or "0.5"."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION.fullmatch(text):
            raise ResetFormatError(value) from None
        return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))
    if not math.isfinite(seconds) or seconds < 0:
        raise ResetFormatError(value)
    return seconds


class _Bucket:
    """One budget: `level` units, refilled at `per_min / 60` per second up to `capacity`.

    The level starts at 0 (no burst at start; see the module docstring).

    A provider hint (from `reset` headers) caps the refill rate at `hint_per_s` until
    `hint_until`. Callers refill to `now` before reading or changing the level.
    """

    __slots__ = (
        "burst_s",
        "capacity",
        "configured_per_min",
        "hint_per_s",
        "hint_until",
        "level",
        "per_min",
        "updated_at",
    )

    def __init__(self, per_min: float, burst_s: float, now: float) -> None:
        self.configured_per_min = per_min
        self.burst_s = burst_s
        self.per_min = per_min
        self.capacity = max(1.0, per_min * burst_s / 60.0)
        self.level = 0.0
        self.updated_at = now
        self.hint_per_s = math.inf
        self.hint_until = now

    def refill(self, now: float, factor: float) -> None:
        elapsed = now - self.updated_at
        if elapsed <= 0:
            return
        rate = self.per_min / 60.0 * factor
        hinted = min(max(self.hint_until - self.updated_at, 0.0), elapsed)
        gained = min(rate, self.hint_per_s) * hinted + rate * (elapsed - hinted)
        self.level = min(self.capacity, self.level + gained)
        self.updated_at = now

    def wait_s(self, cost: float, factor: float) -> float:
        """Seconds from `updated_at` until `cost` can be taken (a full bucket for dear calls)."""
        need = min(cost, self.capacity) - self.level
        if need <= 0:
            return 0.0
        rate = self.per_min / 60.0 * factor
        hinted_s = max(self.hint_until - self.updated_at, 0.0)
        slow = min(rate, self.hint_per_s)
        if slow * hinted_s >= need:
            return need / slow
        return hinted_s + (need - slow * hinted_s) / rate

    def give_back(self, units: float) -> None:
        self.level = min(self.capacity, self.level + units)

    def observe(
        self, limit: float | None, remaining: float | None, reset_s: float | None, now: float
    ) -> None:
        if limit is not None and limit > 0:
            self.per_min = min(self.configured_per_min, limit)
            self.capacity = max(1.0, self.per_min * self.burst_s / 60.0)
            self.level = min(self.level, self.capacity)
        if remaining is None:
            return
        self.level = min(self.level, remaining)
        provider_limit = self.per_min if limit is None else limit
        if reset_s is not None and reset_s > 0 and provider_limit > remaining:
            self.hint_per_s = (provider_limit - remaining) / reset_s
            self.hint_until = now + reset_s


class Reservation:
    """Budget granted to one call: settle it with the real token count when usage arrives."""

    __slots__ = ("_limiter", "_settled", "granted_at", "tokens")

    def __init__(self, limiter: RateLimiter, tokens: int, granted_at: float) -> None:
        self._limiter = limiter
        self._settled = False
        self.tokens = tokens
        self.granted_at = granted_at

    @property
    def settled(self) -> bool:
        return self._settled

    def settle(self, actual_tokens: int) -> None:
        """Return ``tokens - actual_tokens`` to the token bucket (negative: charge the excess)."""
        if self._settled:
            raise ReservationSettledError(self.tokens)
        self._settled = True
        if actual_tokens != self.tokens:
            self._limiter._give_back(0, self.tokens - actual_tokens)


class _Waiter:
    __slots__ = ("future", "tokens")

    def __init__(self, tokens: int, future: asyncio.Future[Reservation]) -> None:
        self.tokens = tokens
        self.future = future


class RateLimiter:
    """FIFO requests/tokens budget for one model (see the module docstring).

    With `LoopClock`, build it inside the running loop (it reads the clock at construction).
    """

    def __init__(
        self, config: LimitConfig, clock: Clock, *, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        now = clock.now()
        self._requests = None if config.rpm is None else _Bucket(config.rpm, config.burst_s, now)
        self._tokens = None if config.tpm is None else _Bucket(config.tpm, config.burst_s, now)
        self._waiters: deque[_Waiter] = deque()
        self._timer: TimerHandle | None = None
        self._timer_when = 0.0
        self.timers_scheduled = 0
        self._factor = 1.0
        self._paused_until = -math.inf
        self._strikes = 0
        self._last_decrease_at = -math.inf
        self._last_increase_at = -math.inf

    # -- what the display and tests read ------------------------------------------------

    @property
    def rate_factor(self) -> float:
        """Fraction of the configured rate in force (1.0 unless 429s lowered it)."""
        return self._factor

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def timer_pending(self) -> bool:
        return self._timer is not None

    @property
    def effective_rpm(self) -> float | None:
        return None if self._requests is None else self._requests.per_min * self._factor

    @property
    def effective_tpm(self) -> float | None:
        return None if self._tokens is None else self._tokens.per_min * self._factor

    # -- acquire ----------------------------------------------------------------------------

    async def acquire(self, tokens: int) -> Reservation:
        """Wait (FIFO) for one request and `tokens` tokens; returns the reservation to settle."""
        if tokens < 0:
            raise ValueError(f"tokens cannot be negative, got {tokens}")
        now = self._clock.now()
        if not self._waiters and self._wait_s(tokens, now) <= _TIME_EPSILON_S:
            return self._grant(tokens, now)
        waiter = _Waiter(tokens, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            self._schedule(now)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._withdraw(waiter)
            raise

    def _withdraw(self, waiter: _Waiter) -> None:
        future = waiter.future
        if future.done() and not future.cancelled():
            reservation = future.result()  # granted, but its caller is gone: undo the grant
            reservation._settled = True
            self._give_back(1, reservation.tokens)
            return
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        self._dispatch()

    def _wait_s(self, tokens: int, now: float) -> float:
        """Seconds until a call of `tokens` could go, ignoring the queue (refills to `now`)."""
        wait = max(0.0, self._paused_until - now)
        if self._requests is not None:
            self._requests.refill(now, self._factor)
            wait = max(wait, self._requests.wait_s(1, self._factor))
        if self._tokens is not None:
            self._tokens.refill(now, self._factor)
            wait = max(wait, self._tokens.wait_s(tokens, self._factor))
        return wait

    def _grant(self, tokens: int, now: float) -> Reservation:
        if self._requests is not None:
            self._requests.level -= 1
        if self._tokens is not None:
            self._tokens.level -= tokens
        return Reservation(self, tokens, now)

    def _dispatch(self) -> None:
        """Grant every waiter at the head that fits now, then set the timer for the next one."""
        now = self._clock.now()
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():  # cancelled: its task's _withdraw will find it gone
                self._waiters.popleft()
                continue
            if self._wait_s(head.tokens, now) > _TIME_EPSILON_S:
                break
            self._waiters.popleft()
            head.future.set_result(self._grant(head.tokens, now))
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        """Keep exactly one timer, due when the head waiter can go (none if nobody waits)."""
        if not self._waiters:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        when = now + self._wait_s(self._waiters[0].tokens, now)
        if self._timer is not None:
            if abs(when - self._timer_when) <= _TIME_EPSILON_S:
                return
            self._timer.cancel()
        self._timer = self._clock.call_at(when, self._on_timer)
        self._timer_when = when
        self.timers_scheduled += 1

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _give_back(self, requests: int, tokens: int) -> None:
        now = self._clock.now()
        self._wait_s(0, now)  # refill to now before changing levels
        if self._requests is not None and requests:
            self._requests.give_back(requests)
        if self._tokens is not None and tokens:
            self._tokens.give_back(tokens)
        self._dispatch()

    # -- adaptation -------------------------------------------------------------------------

    def observe_headers(
        self,
        limit_requests: float | None = None,
        remaining_requests: float | None = None,
        reset_requests_s: float | None = None,
        limit_tokens: float | None = None,
        remaining_tokens: float | None = None,
        reset_tokens_s: float | None = None,
    ) -> None:
        """Lower our budgets to the provider's `x-ratelimit-*` view; never raise them."""
        now = self._clock.now()
        self._wait_s(0, now)
        if self._requests is not None:
            self._requests.observe(limit_requests, remaining_requests, reset_requests_s, now)
        if self._tokens is not None:
            self._tokens.observe(limit_tokens, remaining_tokens, reset_tokens_s, now)
        self._dispatch()

    def set_learned_rpm(self, rpm: float) -> None:
        """Pace requests at `rpm` (a `RateLearner`'s rate): it replaces the configured RPM, which
        the learner already takes as its ceiling. Waiters are re-timed at once."""
        now = self._clock.now()
        self._wait_s(0, now)  # refill at the old rate up to now
        bucket = self._requests
        if bucket is None:
            self._requests = _Bucket(rpm, self.config.burst_s, now)
        else:
            bucket.configured_per_min = bucket.per_min = rpm
            bucket.capacity = max(1.0, rpm * bucket.burst_s / 60.0)
            bucket.level = min(bucket.level, bucket.capacity)
        self._dispatch()

    def set_share(self, share: float) -> None:
        """Pace at `share` of the configured budgets: one of N workers sharing one run's
        budget takes 1/N of it (re-set as workers come and go). Waiters are re-timed."""
        now = self._clock.now()
        self._wait_s(0, now)  # refill at the old rate up to now
        for bucket, configured in (
            (self._requests, self.config.rpm),
            (self._tokens, self.config.tpm),
        ):
            if bucket is not None and configured is not None:
                bucket.configured_per_min = bucket.per_min = configured * share
                bucket.capacity = max(1.0, bucket.per_min * bucket.burst_s / 60.0)
                bucket.level = min(bucket.level, bucket.capacity)
        self._dispatch()

    def pause_for(self, seconds: float) -> None:
        """Send nothing for `seconds` (a Retry-After); a longer pause already set stands."""
        now = self._clock.now()
        self._wait_s(0, now)
        self._paused_until = max(self._paused_until, now + seconds)
        self._dispatch()

    def on_rate_limited(self, retry_after_s: float | None = None) -> None:
        """A 429: pause dispatch for Retry-After (or a backoff) and lower the rate."""
        now = self._clock.now()
        self._wait_s(0, now)  # refill at the old rate up to now
        config = self.config
        if now - self._last_decrease_at >= config.adapt_interval_s:
            self._strikes += 1
            self._factor = max(config.min_rate_factor, self._factor * config.decrease_factor)
            self._last_decrease_at = now
            log.info("rate_limit_decrease", rate_factor=self._factor, retry_after_s=retry_after_s)
        self._last_increase_at = now
        if retry_after_s is None:
            retry_after_s = exponential_backoff(
                max(1, self._strikes),
                config.pause_base_s,
                config.pause_max_s,
                config.pause_jitter,
                self._rng,
            )
        self._paused_until = max(self._paused_until, now + retry_after_s)
        self._dispatch()

    def on_success(self) -> None:
        """A call went through: step the rate back up (at most once per `adapt_interval_s`)."""
        now = self._clock.now()
        self._strikes = 0
        if self._factor >= 1.0 or now < self._paused_until:
            return
        if now - self._last_increase_at < self.config.adapt_interval_s:
            return
        self._wait_s(0, now)
        self._factor = min(1.0, self._factor + self.config.increase_step)
        self._last_increase_at = now
        self._dispatch()


class LimiterRegistry:
    """One `RateLimiter` per model, built on first use from the default and its override."""

    def __init__(
        self, config: LimitsConfig, clock: Clock, *, rng: random.Random | None = None
    ) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng
        self._limiters: dict[str, RateLimiter] = {}
        self._share = 1.0

    def set_share(self, share: float) -> None:
        """Every model's budgets at `share` (a worker's part of a run shared by several)."""
        self._share = share
        for limiter in self._limiters.values():
            limiter.set_share(share)

    def config_for(self, model: str) -> LimitConfig:
        override = self._config.models.get(model)
        if override is None:
            return self._config.default
        changes = {
            name: getattr(override, name)
            for name in override.__struct_fields__
            if getattr(override, name) is not UNSET
        }
        return msgspec.structs.replace(self._config.default, **changes)

    def get(self, model: str) -> RateLimiter:
        limiter = self._limiters.get(model)
        if limiter is None:
            limiter = RateLimiter(self.config_for(model), self._clock, rng=self._rng)
            if self._share != 1.0:
                limiter.set_share(self._share)
            self._limiters[model] = limiter
        return limiter

    def models(self) -> list[str]:
        """Models that have a limiter so far (for the progress display)."""
        return list(self._limiters)
