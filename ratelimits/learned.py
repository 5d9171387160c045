"""The learned request rate: find the rate a server allows from its answers (AIMD on 429s).

A server that enforces N requests per minute does so with a token bucket or a sliding window;
it says so with 429s, and sometimes with `Retry-After` and `x-ratelimit-*` headers. The
`RateLearner` keeps one number, the requests per minute it lets through, and sets it on the
FIFO limiter (`RateLimiter.set_learned_rpm`), which paces the calls. No second pacing
mechanism.

    SLOW_START --(first 429)--> AVOIDANCE
      rate * growth per clean window + increase_share * rate per `increase_windows` clean ones
                                     a cut on a 429 (once per reaction)

* **Start.** From the rate remembered for this endpoint and model (AVOIDANCE at once), or from
  `initial_rpm` in SLOW_START: the rate doubles each `window_s` (0.1 s) that ends without a
  429, but only once every call sent at the previous rate has been answered (as TCP doubles
  once per round trip: at high latency it waits for the evidence instead of overshooting
  blind). The first 429 halves it back to the last rate that drew none, or to what the server
  let through over the last `slow_start_exit_s` if that is less (a server's burst allowance
  can hide an excess for a few doublings).
* **Increase.** `increase_windows` windows in a row without a 429, that used most of the rate
  (grants at least `used_share` of what it allowed) and whose calls at the last rate have been
  answered, raise the rate by `increase_share` of itself. An unused rate (or an idle spell: no
  grant and no answer for longer than twice the pacing interval, and than a window) is no
  evidence that the server would take more, so it does not grow.
* **Decrease.** A 429 cuts the rate to `decrease_factor` * rate, or further to the share of
  the answers since the last cut that were not 429s (far over the limit, the server took only
  that share: one step lands near it), but at most by half at once (a server refusing
  everything for a while does not drive the rate to nothing in one step). Once per reaction:
  a 429 for a call granted before the last cut (already in flight, or waiting, when we
  reacted) is counted but changes nothing, and two cuts are at least `min_cut_interval_s`
  apart. So a burst of 429s from the calls in
  flight counts once. The refused call waits its Retry-After; a Retry-After of `pause_min_s`
  or more also pauses the limiter for that long (a pause on every short one would stop all
  calls for a whole second each time a server rounds 50 ms up to "Retry-After: 1").
* **No over-cutting.** The rate is never cut below `floor_share` * the best rate of successful
  calls sustained over `sustain_s` in the last `memory_s` (idle windows count as zero): when
  429s keep coming while the rate is already well below what the server just sustained (a
  sliding window still full of our earlier excess), the rate holds instead of collapsing.
* **Headers.** An `x-ratelimit-limit-requests` value is the server's own number: the rate
  jumps to it (and never goes above it).
* **Ceiling.** With `--rpm` given, the learned rate never exceeds it, and starts there.

Pure logic on an injectable clock; the caller reports grants, successes and 429s.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections import deque
from typing import Annotated, Protocol

import msgspec
import structlog
from msgspec import Meta

from ratelimits.clock import Clock

log = structlog.get_logger()

#: (seconds from the learner's start, learned rpm, calls answered, 429s among them)
HistoryPoint = tuple[float, float, int, int]
MAX_HISTORY = 4096


class LearnConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    initial_rpm: Annotated[float, Meta(gt=0)] = 600.0
    slow_start_growth: Annotated[float, Meta(gt=1)] = 2.0
    min_rpm: Annotated[float, Meta(gt=0)] = 1.0
    window_s: Annotated[float, Meta(gt=0)] = 0.1  # slow start doubles per window
    increase_windows: Annotated[int, Meta(gt=0)] = 5  # AIMD steps up once per this many
    increase_share: Annotated[float, Meta(ge=0, le=1)] = 0.01
    decrease_factor: Annotated[float, Meta(gt=0, lt=1)] = 0.85
    min_cut_interval_s: Annotated[float, Meta(ge=0)] = 0.5
    min_share_samples: Annotated[int, Meta(gt=0)] = 10
    # 429s up to this share of the answers (over the last `min_cut_interval_s`, and within a
    # window) are noise, not the limit: a server that refuses a steady 2 % at random whatever
    # the rate would otherwise push the rate down for good
    tolerated_share: Annotated[float, Meta(ge=0, lt=1)] = 0.03
    # a Retry-After at least this long pauses every call (the server says: not now, whatever
    # the rate); a shorter one only delays the refused call, and the cut does the rest
    pause_min_s: Annotated[float, Meta(ge=0)] = 2.0
    used_share: Annotated[float, Meta(ge=0, le=1)] = 0.7
    floor_share: Annotated[float, Meta(ge=0, le=1)] = 0.7
    memory_s: Annotated[float, Meta(gt=0)] = 10.0
    sustain_s: Annotated[float, Meta(gt=0)] = 5.0
    slow_start_exit_s: Annotated[float, Meta(gt=0)] = 2.0


class Phase(enum.Enum):
    SLOW_START = "slow_start"
    AVOIDANCE = "avoidance"


class RateSink(Protocol):
    """What the learner steers: the limiter's request rate (and its pause)."""

    def set_learned_rpm(self, rpm: float) -> None: ...

    def pause_for(self, seconds: float) -> None: ...


class RateLearner:
    """One endpoint and model's allowed request rate (see the module docstring)."""

    def __init__(
        self,
        config: LearnConfig,
        clock: Clock,
        sink: RateSink | None = None,
        *,
        start_rpm: float | None = None,
        ceiling_rpm: float | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._sink = sink
        self.ceiling_rpm = ceiling_rpm
        known = start_rpm if start_rpm is not None else ceiling_rpm
        self.phase = Phase.SLOW_START if known is None else Phase.AVOIDANCE
        self._rate = self._bounded(config.initial_rpm if known is None else known)
        now = clock.now()
        self._window_start = now
        self._granted = 0
        self._succeeded = 0
        self._limited_in_window = 0
        self._granted_total = 0
        self._evidence_at = 0  # grants before the last change: their answers judge it
        self._clean_windows = 0  # windows in a row without a 429
        self._clean_grants = 0
        self._span_answered = 0  # answers and 429s over the windows of the current span
        self._span_limited = 0
        self._answered_since_cut = 0
        self._limited_since_cut = 0
        self._sustained: deque[tuple[float, int]] = deque()  # (window end, successes)
        self._recent: deque[tuple[int, int]] = deque()  # (answers, 429s) of the last windows
        self._last_cut_at = -math.inf
        self.requests = 0
        self.rate_limited = 0
        self.cuts = 0
        self._started_at = now
        # (seconds from start, rpm, answers, 429s) at each window's end and each cut
        self.history: list[HistoryPoint] = []
        self._push()

    @property
    def rate_rpm(self) -> float:
        return self._rate

    @property
    def rate_limited_share(self) -> float:
        """429s among the calls answered so far."""
        return self.rate_limited / self.requests if self.requests else 0.0

    # -- what the dispatcher reports ----------------------------------------------------------

    def on_grant(self) -> None:
        """A call passed the limiter and goes out now."""
        self._roll(self._clock.now())
        self._granted += 1
        self._granted_total += 1

    def on_success(self) -> None:
        """A call was answered (not with a 429)."""
        self._roll(self._clock.now())
        self.requests += 1
        self._succeeded += 1
        self._answered_since_cut += 1

    def on_rate_limited(self, granted_at: float, retry_after_s: float | None = None) -> bool:
        """A call granted at `granted_at` got a 429; True if this one cut the rate."""
        now = self._clock.now()
        self._roll(now)
        self.requests += 1
        self.rate_limited += 1
        self._limited_in_window += 1
        self._answered_since_cut += 1
        self._limited_since_cut += 1
        pause = retry_after_s is not None and retry_after_s >= self.config.pause_min_s
        if pause and retry_after_s is not None and self._sink is not None:
            self._sink.pause_for(retry_after_s)
        if granted_at < self._last_cut_at:
            return False  # sent before we reacted: this excess is already answered
        if now - self._last_cut_at < self.config.min_cut_interval_s:
            return False
        if self._recent_share() <= self.config.tolerated_share:
            return False  # a stray 429 among many answers: noise, not the limit
        self._cut(now)
        return True

    def _recent_share(self) -> float:
        """429s among the answers of the current window and those of the last
        `min_cut_interval_s`."""
        answered = self._succeeded + self._limited_in_window
        limited = self._limited_in_window
        for window_answered, window_limited in self._recent:
            answered += window_answered
            limited += window_limited
        return limited / answered if answered else 0.0

    def observe_limit(self, limit_rpm: float | None) -> None:
        """The server's `x-ratelimit-limit-requests`: its own number is the rate to use."""
        if limit_rpm is None or limit_rpm <= 0:
            return
        ceiling = limit_rpm if self.ceiling_rpm is None else min(self.ceiling_rpm, limit_rpm)
        if self.ceiling_rpm == ceiling and self._rate == ceiling:
            return
        self.ceiling_rpm = ceiling
        self.phase = Phase.AVOIDANCE
        self._rate = ceiling
        self._push()

    # -- the control law ----------------------------------------------------------------------

    def _roll(self, now: float) -> None:
        """Close every window that ended by `now` (the first one with what it counted)."""
        window_s = self.config.window_s
        if now < self._window_start + window_s:
            return
        end = self._window_start + window_s
        self._close_window(end)
        skipped = math.floor((now - end) / window_s)
        memory = math.ceil(self.config.memory_s / window_s)
        for k in range(1, min(skipped, memory) + 1):  # idle windows let nothing through
            self._sustained.append((end + k * window_s, 0))
        self._trim(end + skipped * window_s)
        # Windows without a grant or an answer are an idle spell (the rate was not used) only
        # if the gap is longer than the pacing explains: below 1,200 rpm the limiter itself
        # spaces calls more than a window apart, and a rate in full use leaves windows empty.
        if skipped and now - end > 2 * 60.0 / self._rate:
            self._clean_windows = self._clean_grants = 0
            self._span_answered = self._span_limited = 0
            self._recent.clear()
        elif skipped:
            self._clean_windows += skipped  # quiet windows of a paced rate: nothing refused
        self._window_start = end + skipped * window_s  # idle windows: nothing else to learn
        self._granted = self._succeeded = self._limited_in_window = 0

    def _close_window(self, end: float) -> None:
        config = self.config
        self._sustained.append((end, self._succeeded))
        self._trim(end)
        self._record(end)
        answered = self._succeeded + self._limited_in_window
        self._recent.append((answered, self._limited_in_window))
        while len(self._recent) > max(1, round(config.min_cut_interval_s / config.window_s)):
            self._recent.popleft()
        self._clean_windows += 1
        self._clean_grants += self._granted
        self._span_answered += answered
        self._span_limited += self._limited_in_window
        span = 1 if self.phase is Phase.SLOW_START else config.increase_windows
        if self._clean_windows < span or self.requests < self._evidence_at:
            return  # too soon, or calls sent at this rate are still unanswered
        allowed = self._rate * span * config.window_s / 60.0
        used = self._clean_grants >= math.floor(config.used_share * allowed)
        clean = self._span_limited <= config.tolerated_share * self._span_answered
        self._clean_windows = self._clean_grants = self._span_answered = self._span_limited = 0
        if not used or not clean:
            return
        if self.phase is Phase.SLOW_START:
            self._rate = self._bounded(self._rate * config.slow_start_growth)
        else:
            self._rate = self._bounded(self._rate * (1.0 + config.increase_share))
        self._evidence_at = self._granted_total
        self._push()

    def _record(self, now: float) -> None:
        """Keep the history at most `MAX_HISTORY` points, every other one dropped when full."""
        if len(self.history) >= MAX_HISTORY:
            self.history = self.history[::2]
        point = (round(now - self._started_at, 3), self._rate, self.requests, self.rate_limited)
        self.history.append(point)

    def _trim(self, now: float) -> None:
        while self._sustained and self._sustained[0][0] <= now - self.config.memory_s:
            self._sustained.popleft()

    def _cut(self, now: float) -> None:
        config = self.config
        if self.phase is Phase.SLOW_START:
            self.phase = Phase.AVOIDANCE
            # the last rate that drew no 429, or what the server let through lately if less
            # (its burst allowance can hide an excess for a few doublings)
            target = self._rate / config.slow_start_growth
            latest = self._sustained_rpm(config.slow_start_exit_s, latest=True)
            if 0 < latest < target:  # (nothing let through yet is no measure of the limit)
                target = latest
        else:
            target = self._rate * config.decrease_factor
        answered = self._answered_since_cut
        if answered >= config.min_share_samples:  # far over: the server took only this share
            took = max(0.5, 1.0 - self._limited_since_cut / answered)  # at most halved at once
            target = min(target, self._rate * took)
        self._answered_since_cut = self._limited_since_cut = 0
        floor = config.floor_share * self._sustained_rpm(config.sustain_s)
        new_rate = self._bounded(min(self._rate, max(target, floor)))
        self._last_cut_at = now
        if new_rate >= self._rate:
            return  # already well below what the server just sustained: hold
        self.cuts += 1
        self._rate = new_rate
        self._evidence_at = self._granted_total  # the next step up is judged at the new rate
        self._clean_windows = self._clean_grants = self._span_answered = self._span_limited = 0
        self._record(now)
        log.info("rate_learned_decrease", rpm=round(new_rate, 1), floor_rpm=round(floor, 1))
        self._push()

    def _sustained_rpm(self, span_s: float, latest: bool = False) -> float:
        """Successful calls per minute over `span_s` (the floor's `sustain_s` is long enough that
        a server's burst allowance, let through at once, weighs little): the best such span in
        the last `memory_s`, or with `latest` the most recent one."""
        counts = [n for _, n in self._sustained]
        if not counts:
            return math.inf if latest else 0.0
        span = min(len(counts), max(1, round(span_s / self.config.window_s)))
        prefix = [0, *itertools.accumulate(counts)]
        sums = [prefix[i + span] - prefix[i] for i in range(len(counts) - span + 1)]
        best = sums[-1] if latest else max(sums)
        return best * 60.0 / (span * self.config.window_s)

    def _bounded(self, rpm: float) -> float:
        rpm = max(self.config.min_rpm, rpm)
        return rpm if self.ceiling_rpm is None else min(self.ceiling_rpm, rpm)

    def _push(self) -> None:
        if self._sink is not None:
            self._sink.set_learned_rpm(self._rate)


class LearnedRate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a run learned of one model's rate, for the display, `status` and the next run."""

    model: str
    rpm: float
    requests: int
    rate_limited: int


class LearnerRegistry:
    """One `RateLearner` per model of this process's endpoint, each steering its model's
    limiter; built on first use, starting from the remembered rate or the `--rpm` ceiling."""

    def __init__(
        self,
        config: LearnConfig,
        clock: Clock,
        *,
        start_rpm: dict[str, float] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._start = dict(start_rpm or {})
        self._learners: dict[str, RateLearner] = {}

    def get(self, model: str, sink: RateSink, ceiling_rpm: float | None) -> RateLearner:
        """`model`'s learner; `sink` and `ceiling_rpm` (its `--rpm`) are used when it is built."""
        learner = self._learners.get(model)
        if learner is None:
            ceiling = ceiling_rpm
            start = self._start.get(model)
            if start is not None and ceiling is not None:
                start = min(start, ceiling)
            learner = RateLearner(
                self.config, self._clock, sink, start_rpm=start, ceiling_rpm=ceiling
            )
            self._learners[model] = learner
        return learner

    def history(self) -> dict[str, list[HistoryPoint]]:
        """Each model's learned rate over time (for the bench's plot)."""
        return {model: learner.history for model, learner in sorted(self._learners.items())}

    def snapshot(self) -> list[LearnedRate]:
        return [
            LearnedRate(model, round(learner.rate_rpm, 1), learner.requests, learner.rate_limited)
            for model, learner in sorted(self._learners.items())
        ]
