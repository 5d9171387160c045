"""Progress while a run goes: done/total, rate, ETA, errors.

A live rich display on a terminal; a structured `progress` log event every few seconds
otherwise (so CI logs and `nohup` runs stay readable).
"""

from __future__ import annotations

import asyncio
import collections
import time

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from engine.run import RunStats
from ratelimits.breaker import CircuitBreaker
from ratelimits.learned import LearnerRegistry

log = structlog.get_logger()


class RateWindow:
    """Jobs per second over the last `window_s` seconds (pure, clock passed in)."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, now: float, finished: int) -> None:
        self._samples.append((now, finished))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def eta_s(remaining: int, rate: float) -> float | None:
    return remaining / rate if rate > 0 else None


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def paused_since(breaker: CircuitBreaker, loop_now: float, wall_now: float) -> str | None:
    """Wall-clock time (HH:MM:SS) since when the API is unavailable, or None if it is up."""
    if not breaker.is_open or breaker.opened_at is None:
        return None
    opened = wall_now - (loop_now - breaker.opened_at)
    return time.strftime("%H:%M:%S", time.localtime(opened))


def learned_fields(learners: LearnerRegistry | None) -> dict[str, object]:
    """The learned request rate (all models together) and the share of answers that were 429s."""
    if learners is None:
        return {}
    learned = learners.snapshot()
    if not learned:
        return {"learned_rpm": None, "rate_limited_pct": 0.0}
    answered = sum(r.requests for r in learned)
    limited = sum(r.rate_limited for r in learned)
    return {
        "learned_rpm": round(sum(r.rpm for r in learned)),
        "rate_limited_pct": round(100.0 * limited / answered, 2) if answered else 0.0,
    }


class ProgressReporter:
    def __init__(
        self,
        stats: RunStats,
        total: int,
        finished_before: int,
        interactive: bool,
        breaker: CircuitBreaker | None = None,
        learners: LearnerRegistry | None = None,
    ):
        self._learners = learners
        self._breaker = breaker
        self._stats = stats
        self._total = total
        self._before = finished_before
        self._interactive = interactive
        self._window = RateWindow()

    def observe_run(self, finished: int, total: int) -> None:
        """The whole run's figures (a worker sharing a queue): progress shows the run's total,
        this process's own counts adding to it until the next observation."""
        s = self._stats
        self._before = finished - (s.done + s.failed)
        self._total = total

    def snapshot(self) -> dict[str, object]:
        s = self._stats
        finished = self._before + s.done + s.failed
        self._window.add(time.monotonic(), finished)
        rate = self._window.rate()
        return {
            "phase": "run",
            "finished": finished,
            "total": self._total,
            "done": s.done,
            "failed": s.failed,
            "retries": s.retried,
            "in_flight": s.in_flight,
            "rate_per_s": round(rate, 1),
            "eta": format_eta(eta_s(self._total - finished, rate)),
            "tokens": s.prompt_tokens + s.completion_tokens,
            "cached": s.cached,
            "paused_since": self._paused_since(),
            **learned_fields(self._learners),
        }

    def _paused_since(self) -> str | None:
        if self._breaker is None:
            return None
        return paused_since(self._breaker, asyncio.get_running_loop().time(), time.time())

    async def run(self) -> None:
        if self._interactive:
            await self._run_live()
        else:
            while True:
                await asyncio.sleep(5.0)
                snap = self.snapshot()
                if snap["paused_since"]:
                    log.warning("paused: API unavailable", since=snap["paused_since"])
                log.info("progress", **snap)

    async def _run_live(self) -> None:
        columns = (
            TextColumn("running"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[line]}"),
        )
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task("generate", total=self._total, line="")
            while True:
                snap = self.snapshot()
                line = (
                    f"{snap['rate_per_s']}/s ETA {snap['eta']} failed {snap['failed']} "
                    f"retries {snap['retries']} cached {snap['cached']} "
                    f"in flight {snap['in_flight']}"
                )
                if snap.get("learned_rpm") is not None:
                    line += f" learned {snap['learned_rpm']} rpm, 429s {snap['rate_limited_pct']} %"
                if snap["paused_since"]:
                    line = f"[bold red]paused: API unavailable since {snap['paused_since']}[/]"
                bar.update(task, completed=int(str(snap["finished"])), line=line)
                await asyncio.sleep(0.5)
