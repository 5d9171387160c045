"""`python -m bench learner`: the learned rate's accuracy, on a simulated clock.

The engine learns a server's request rate from its 429s (`ratelimits/learned.py`). This runs
the same `RateLearner` against token-bucket servers on a fake clock (no processes, no sockets:
the whole grid takes seconds, and gives the same figures on any machine) and reports, for each
server (limit, burst allowance, latency):

- the share of the calls answered with a 429, over the whole span;
- the rate accepted after the first `warmup_s`, as a share of what the server allows, or of
  what the concurrency can reach at that latency if that is less ("utilisation");

and, against a server with no limit, how long the slow start takes to reach
`RAMP_TARGET_RPM` and how many calls are answered in the first two seconds.

A server is a token bucket holding `burst_s` seconds of its limit, full at the start (the
built-in simulator's holds one second). Calls go out at the learned rate, at most
`concurrency` at a time, each answered `latency` later. With `--set FIELD=VALUE` the learner
runs with another `LearnConfig`, which is how a change to it is weighed against the accuracy it
must keep: a faster slow start is paid for in 429s and utilisation, cell by cell. With
`--random-429 P` every server also refuses a share P of the calls at random (a seeded draw,
the same in every run), as an overloaded API does whatever the rate: utilisation can then reach
1 - P at most.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence

import msgspec

from ratelimits.clock import FakeClock
from ratelimits.learned import LearnConfig, RateLearner

RAMP_TARGET_RPM = 600_000.0  # 10,000 calls a second: above a zero-latency run on this machine
EARLY_S = 2.0  # "calls answered in the first two seconds", against a server with no limit
LIMITS_RPM = (600.0, 1200.0, 6000.0, 60_000.0, 300_000.0)
LATENCIES_MS = (2.0, 20.0, 50.0, 500.0)
BURSTS_S = (0.1, 1.0, 5.0)
UNLIMITED_LATENCY_MS = 4.0


class TokenBucket:
    """A server that enforces `limit_rpm` with a bucket of `burst_s` seconds of it (at least
    one call), full at the start."""

    def __init__(self, limit_rpm: float, burst_s: float) -> None:
        self._per_s = limit_rpm / 60.0
        self._capacity = max(1.0, self._per_s * burst_s)
        self._level = self._capacity
        self._at = 0.0

    def admit(self, now: float) -> bool:
        self._level = min(self._capacity, self._level + (now - self._at) * self._per_s)
        self._at = now
        if self._level >= 1.0:
            self._level -= 1.0
            return True
        return False


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One server's figures (`limit_rpm` None: no limit)."""

    limit_rpm: float | None
    burst_s: float
    latency_ms: float
    answered: int
    limited: int  # 429s among the answered calls
    share_429: float
    utilisation: float  # accepted after the warm-up / what the server and concurrency allow
    ramp_s: float | None  # when the learned rate first reached RAMP_TARGET_RPM (None: never)
    answered_early: int  # calls answered without a 429 in the first EARLY_S seconds


class Grid(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    config: LearnConfig
    seconds: float
    warmup_s: float
    concurrency: int
    outcomes: list[Outcome]
    random_429: float = 0.0


def simulate(
    config: LearnConfig,
    limit_rpm: float | None,
    burst_s: float,
    latency_ms: float,
    *,
    seconds: float,
    warmup_s: float,
    concurrency: int,
    random_429: float = 0.0,
) -> Outcome:
    """Drive a fresh learner against one server for `seconds` of simulated time (and with
    `random_429`, refusals at random on top of the server's limit)."""
    draw = random.Random(0).random
    clock = FakeClock()
    learner = RateLearner(config, clock)
    server = None if limit_rpm is None else TokenBucket(limit_rpm, burst_s)
    latency_s = latency_ms / 1000.0
    answers: list[tuple[float, int, float, bool]] = []  # (due, order, granted at, admitted)
    order = in_flight = answered = limited = accepted = early = 0
    ramp_s: float | None = None
    next_send = 0.0
    while next_send < seconds:
        while answers and answers[0][0] <= next_send:
            due, _, granted_at, admitted = heapq.heappop(answers)
            clock.advance_to(due)
            in_flight -= 1
            answered += 1
            if admitted:
                learner.on_success()
                accepted += due >= warmup_s
                early += due < EARLY_S
            else:
                learner.on_rate_limited(granted_at)
                limited += 1
        if in_flight >= concurrency:
            next_send = answers[0][0]  # every slot busy: the next call waits for an answer
            continue
        clock.advance_to(next_send)
        learner.on_grant()
        if ramp_s is None and learner.rate_rpm >= RAMP_TARGET_RPM:
            ramp_s = next_send
        if random_429 and draw() < random_429:
            admitted = False  # refused before the bucket: no token spent
        else:
            admitted = server is None or server.admit(next_send)
        heapq.heappush(answers, (next_send + latency_s, order, next_send, admitted))
        order += 1
        in_flight += 1
        next_send += 60.0 / learner.rate_rpm
    reachable = concurrency * 60.0 / max(latency_s, 1e-9)
    allowed = reachable if limit_rpm is None else min(limit_rpm, reachable)
    return Outcome(
        limit_rpm=limit_rpm,
        burst_s=burst_s,
        latency_ms=latency_ms,
        answered=answered,
        limited=limited,
        share_429=round(limited / answered, 4) if answered else 0.0,
        utilisation=round(accepted * 60.0 / (seconds - warmup_s) / allowed, 3),
        ramp_s=None if ramp_s is None else round(ramp_s, 3),
        answered_early=early,
    )


def run_grid(
    config: LearnConfig,
    *,
    seconds: float = 30.0,
    warmup_s: float = 5.0,
    concurrency: int = 64,
    random_429: float = 0.0,
    limits_rpm: Sequence[float] = LIMITS_RPM,
    latencies_ms: Sequence[float] = LATENCIES_MS,
    bursts_s: Sequence[float] = BURSTS_S,
) -> Grid:
    """Every (burst, limit, latency) server, then the server with no limit."""
    cells: list[tuple[float | None, float, float]] = [
        (limit, burst, lat) for burst in bursts_s for limit in limits_rpm for lat in latencies_ms
    ]
    cells.append((None, 0.0, UNLIMITED_LATENCY_MS))
    outcomes = [
        simulate(
            config,
            limit,
            burst,
            lat,
            seconds=seconds,
            warmup_s=warmup_s,
            concurrency=concurrency,
            random_429=random_429,
        )
        for limit, burst, lat in cells
    ]
    return Grid(config, seconds, warmup_s, concurrency, outcomes, random_429)


def render(grid: Grid) -> str:
    """Markdown: one row per server (burst, limit), a `429 share / utilisation` cell per
    latency; then the worst of each and the server with no limit."""
    limited = [o for o in grid.outcomes if o.limit_rpm is not None]
    latencies = sorted({o.latency_ms for o in limited})
    by_key = {(o.burst_s, o.limit_rpm, o.latency_ms): o for o in limited}
    servers = list(dict.fromkeys((o.burst_s, o.limit_rpm) for o in limited))
    lines = [
        f"the learned rate on a simulated clock: {grid.seconds:g} s per server, concurrency "
        f"{grid.concurrency}, utilisation counted after {grid.warmup_s:g} s"
        + (f", {grid.random_429:.1%} of calls refused at random" if grid.random_429 else ""),
        "",
        "| burst s | limit rpm | " + " | ".join(f"{lat:g} ms" for lat in latencies) + " |",
        "|---|---|" + "---|" * len(latencies),
    ]
    for burst, limit in servers:
        cells = []
        for lat in latencies:
            o = by_key.get((burst, limit, lat))
            cells.append("-" if o is None else f"{o.share_429:.1%} / {o.utilisation:.2f}")
        lines.append(f"| {burst:g} | {limit:,.0f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "cells: 429s among the calls answered / utilisation (above 1 where a burst allowance "
        "that refilled during a back-off is let through again)"
    )
    if limited:
        worst = max(limited, key=lambda o: o.share_429)
        lowest = min(limited, key=lambda o: o.utilisation)
        lines.append(f"most 429s: {_where(worst)}; lowest utilisation: {_where(lowest)}")
    for o in grid.outcomes:
        if o.limit_rpm is None:
            ramp = "not reached" if o.ramp_s is None else f"{o.ramp_s:g} s"
            lines.append(
                f"no limit, {o.latency_ms:g} ms: {RAMP_TARGET_RPM:,.0f} rpm after {ramp}; "
                f"{o.answered_early:,} calls answered in the first {EARLY_S:g} s"
            )
    return "\n".join(lines)


def _where(o: Outcome) -> str:
    limit = 0.0 if o.limit_rpm is None else o.limit_rpm
    return (
        f"{o.share_429:.1%} / {o.utilisation:.2f} "
        f"(burst {o.burst_s:g} s, {limit:,.0f} rpm, {o.latency_ms:g} ms)"
    )


def config_with(settings: Sequence[str]) -> LearnConfig:
    """`LearnConfig` with `FIELD=VALUE` settings laid over its defaults; ValueError naming the
    setting that does not fit."""
    fields: dict[str, str] = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            raise ValueError(f"{setting!r}: expected FIELD=VALUE")
        if name not in LearnConfig.__struct_fields__:
            known = ", ".join(LearnConfig.__struct_fields__)
            raise ValueError(f"{name!r} is not a LearnConfig field (fields: {known})")
        fields[name] = value
    try:
        return msgspec.convert(fields, LearnConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
