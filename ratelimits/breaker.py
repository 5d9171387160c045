"""The outage circuit breaker: when the API is down, pause dispatch and probe, one call at a time.

States::

    CLOSED --(outage detected)--> OPEN --(probe interval elapsed)--> HALF_OPEN
      ^                            ^                                    |
      |                            +------(probe: outage failure)-------+
      +-----------------(probe: any answer that is not an outage)-------+

The caller classifies each call's outcome: `Outcome.OUTAGE` (connection refused or reset,
5xx, timeout), `Outcome.SUCCESS`, or `Outcome.OTHER_FAILURE` (a 400, a 429: the API answered).
It opens when, among the last `window_calls` outcomes, there are at least `min_failures`
outage failures making up at least `failure_ratio` of the window, or after
`consecutive_failures` outage failures in a row. Scattered failures never open it.

While it is not closed, `admit()` blocks, and exactly one waiter at a time is let through as
a probe, at growing intervals: each wait is `probe_share` of the time the outage has lasted so
far, at least `probe_initial_s` and at most `probe_max_s`. So the time lost between the API's
return and the probe that notices it stays a small share of the outage (2.5 % by default): a
20 s outage is probed every 0.25 to 0.5 s, an hour-long one every 30 s (about 300 probes in the
hour). A probe that gets any non-outage answer closes the breaker and releases everyone; a probe
that fails reopens it with the next interval. One timer, set with `Clock.call_at`; no polling.

A dispatcher loop stays simple::

    permit = await breaker.admit()          # permit.is_probe: this call tests the API
    outcome = await call()                  # classified by the caller
    if breaker.record(permit, outcome):     # True: an outage failure, don't spend an attempt
        ...
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from typing import Annotated

import msgspec
import structlog
from msgspec import Meta

from ratelimits.clock import Clock, TimerHandle

log = structlog.get_logger()


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(enum.Enum):
    SUCCESS = "success"
    OUTAGE = "outage"  # connection refused/reset, 5xx, timeout
    OTHER_FAILURE = "other_failure"  # the API answered, with an error


class BreakerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    window_calls: Annotated[int, Meta(gt=0)] = 20
    min_failures: Annotated[int, Meta(gt=0)] = 10
    failure_ratio: Annotated[float, Meta(gt=0, le=1)] = 0.9
    consecutive_failures: Annotated[int, Meta(gt=0)] = 8
    probe_initial_s: Annotated[float, Meta(gt=0)] = 0.25
    probe_share: Annotated[float, Meta(ge=0)] = 0.025
    probe_max_s: Annotated[float, Meta(gt=0)] = 30.0


class PermitUsedError(RuntimeError):
    """A permit was recorded or abandoned twice."""

    def __init__(self, is_probe: bool) -> None:
        super().__init__(f"{'probe ' if is_probe else ''}permit already recorded")
        self.is_probe = is_probe


class Permit:
    """Leave to make one call; `is_probe` says it tests whether the API is back."""

    __slots__ = ("_used", "is_probe")

    def __init__(self, is_probe: bool) -> None:
        self.is_probe = is_probe
        self._used = False


class CircuitBreaker:
    """Outage detector and dispatch gate (see the module docstring)."""

    def __init__(self, config: BreakerConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._window: deque[Outcome] = deque(maxlen=config.window_calls)
        self._window_failures = 0
        self._consecutive = 0
        self._opened_at: float | None = None
        self._next_probe_at: float | None = None
        self._probe_free = False
        self._timer: TimerHandle | None = None
        self._admit_waiters: deque[asyncio.Future[Permit]] = deque()
        self._close_waiters: list[asyncio.Future[None]] = []
        self.failures_while_open = 0
        self.probes_sent = 0

    # -- what the display reads -------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def is_open(self) -> bool:
        """True while dispatch is paused (OPEN or HALF_OPEN)."""
        return self._state is not BreakerState.CLOSED

    @property
    def opened_at(self) -> float | None:
        """Clock time the current outage began ("paused: API unavailable since ..."), or None."""
        return self._opened_at

    @property
    def next_probe_at(self) -> float | None:
        return self._next_probe_at

    # -- the dispatcher's API ---------------------------------------------------------------

    async def admit(self) -> Permit:
        """Return at once while closed; during an outage wait to be closed or chosen as probe."""
        if self._state is BreakerState.CLOSED:
            return Permit(is_probe=False)
        if self._probe_free:
            return self._take_probe()
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._admit_waiters.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.abandon(future.result())  # chosen, but its caller is gone
            elif future in self._admit_waiters:
                self._admit_waiters.remove(future)
            raise

    async def wait_until_closed(self) -> None:
        if self._state is BreakerState.CLOSED:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._close_waiters.append(future)
        await future

    def record(self, permit: Permit, outcome: Outcome) -> bool:
        """Record a call's outcome; True if it is an outage failure seen during an outage.

        A True result means the failure belongs to the outage, not to the job: the caller
        should reschedule the job without spending one of its attempts.
        """
        self._use(permit)
        if permit.is_probe:
            return self._record_probe(outcome)
        if self._state is BreakerState.CLOSED:
            self._add_to_window(outcome)
            if self._should_open():
                self._open()
        if outcome is Outcome.OUTAGE and self._state is not BreakerState.CLOSED:
            self.failures_while_open += 1
            return True
        return False

    def abandon(self, permit: Permit) -> None:
        """The permitted call was never made (cancelled): a probe's turn goes to the next waiter."""
        self._use(permit)
        if permit.is_probe and self._state is BreakerState.HALF_OPEN:
            self._probe_free = True
            self._hand_probe()

    # -- transitions ------------------------------------------------------------------------

    def _use(self, permit: Permit) -> None:
        if permit._used:
            raise PermitUsedError(permit.is_probe)
        permit._used = True

    def _add_to_window(self, outcome: Outcome) -> None:
        if len(self._window) == self._window.maxlen and self._window[0] is Outcome.OUTAGE:
            self._window_failures -= 1
        self._window.append(outcome)
        if outcome is Outcome.OUTAGE:
            self._window_failures += 1
            self._consecutive += 1
        else:
            self._consecutive = 0

    def _should_open(self) -> bool:
        config = self.config
        if self._consecutive >= config.consecutive_failures:
            return True
        failures = self._window_failures
        return (
            failures >= config.min_failures and failures / len(self._window) >= config.failure_ratio
        )

    def _record_probe(self, outcome: Outcome) -> bool:
        if outcome is not Outcome.OUTAGE:
            self._close()
            return False
        self.failures_while_open += 1
        self._state = BreakerState.OPEN
        self._arm_probe_timer()
        return True

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock.now()
        log.warning("breaker_opened", window_failures=self._window_failures)
        self._arm_probe_timer()

    def _probe_interval_s(self, now: float) -> float:
        config = self.config
        lasted_s = 0.0 if self._opened_at is None else now - self._opened_at
        interval = max(config.probe_initial_s, config.probe_share * lasted_s)
        return min(config.probe_max_s, interval)

    def _arm_probe_timer(self) -> None:
        now = self._clock.now()
        self._next_probe_at = now + self._probe_interval_s(now)
        self._timer = self._clock.call_at(self._next_probe_at, self._on_probe_due)

    def _on_probe_due(self) -> None:
        self._timer = None
        self._state = BreakerState.HALF_OPEN
        self._probe_free = True
        self._hand_probe()

    def _take_probe(self) -> Permit:
        self._probe_free = False
        self.probes_sent += 1
        return Permit(is_probe=True)

    def _hand_probe(self) -> None:
        while self._admit_waiters:
            future = self._admit_waiters.popleft()
            if not future.done():
                future.set_result(self._take_probe())
                return

    def _close(self) -> None:
        opened_at = self._opened_at
        self._state = BreakerState.CLOSED
        self._window.clear()
        self._window_failures = 0
        self._consecutive = 0
        self._opened_at = None
        self._next_probe_at = None
        self._probe_free = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        outage_s = None if opened_at is None else self._clock.now() - opened_at
        log.info("breaker_closed", outage_s=outage_s, failures_while_open=self.failures_while_open)
        admit_waiters, self._admit_waiters = self._admit_waiters, deque()
        for admitted in admit_waiters:
            if not admitted.done():
                admitted.set_result(Permit(is_probe=False))
        close_waiters, self._close_waiters = self._close_waiters, []
        for closed in close_waiters:
            if not closed.done():
                closed.set_result(None)
