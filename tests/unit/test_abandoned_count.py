"""The count of abandoned calls: what the writer commits with each batch, and how it adds up."""

from __future__ import annotations

import msgspec

from engine.abandoned import META_KEY, AbandonedCounter, abandoned_in
from engine.report import StatusReport, render_status
from schemas.job import ErrorInfo, Failed, Outcome, Released, Retry

_ABANDONED = ErrorInfo(kind="CallAbandoned", message="abandoned")
_TIMEOUT = ErrorInfo(kind="CallTimeout", message="timed out")


def test_only_abandoned_calls_are_counted() -> None:
    batch: list[Outcome] = [
        Retry(1, _ABANDONED, 0.0, 0.0),
        Retry(2, _TIMEOUT, 0.0, 0.0),
        Failed(3, "j3", 5, _ABANDONED, 0.0, 0.0, 0.0),
        Released(4),
    ]
    assert abandoned_in(batch) == 2


def test_the_committed_value_is_the_running_total_across_processes() -> None:
    counter = AbandonedCounter(before=7)  # what an earlier process committed
    assert counter.meta_for([Retry(1, _TIMEOUT, 0.0, 0.0)]) == {}  # nothing to write
    assert counter.meta_for([Retry(2, _ABANDONED, 0.0, 0.0)]) == {META_KEY: "8"}
    assert counter.meta_for([Retry(3, _ABANDONED, 0.0, 0.0)] * 2) == {META_KEY: "10"}
    assert (counter.this_run, counter.total) == (3, 10)


def test_status_shows_abandoned_calls_only_when_there_are_some() -> None:
    report = StatusReport(
        run_dir="runs/x", total=1, by_status={"done": 1}, by_stage={}, attempts=2,
        prompt_tokens=1, completion_tokens=1, elapsed_s=None, by_model={}, cost_usd=None,
    )  # fmt: skip
    assert "abandoned" not in render_status(report)
    report.abandoned_calls = 3
    assert "  abandoned calls 3 (past the adaptive deadline" in render_status(report)
    assert b'"abandoned_calls":3' in msgspec.json.encode(report)
