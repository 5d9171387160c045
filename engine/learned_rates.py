"""Learned rates, remembered: beside the response cache (`rates.json`) and in the run's meta.

`rates.json` holds, per endpoint (normalised base URL) and model, the request rate the last run
against it learned; the next run starts from it instead of probing from scratch. It lives in
the cache's directory (`--cache`, or the default cache's directory with `--no-cache`), is
written atomically (a temporary file renamed over it) and keeps the `MAX_ENTRIES` most recent.

The run's own figures (learned rate, calls answered, 429s) go into the queue's meta under
`ratelimit:learned`, where `python -m engine status` reads them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from engine.endpoint import cache_scope
from ratelimits.learned import LearnedRate, LearnerRegistry

log = structlog.get_logger()

RATES_FILE = "rates.json"
MAX_ENTRIES = 256
META_KEY = "ratelimit:learned"
HISTORY_KEY = "ratelimit:history"  # model -> [[s from start, rpm, answers, 429s], ...]


class RememberedRate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rpm: float
    updated_at: float  # epoch seconds


_rates_decoder = msgspec.json.Decoder(dict[str, RememberedRate])
_learned_decoder = msgspec.json.Decoder(list[LearnedRate])
_learned_encoder = msgspec.json.Encoder()


def rates_path(cache_path: Path) -> Path:
    """`rates.json` in the directory of the cache (a used or an unused one)."""
    return cache_path.parent / RATES_FILE


def _key(base_url: str | None, model: str) -> str:
    return f"{cache_scope(base_url)} {model}"


def load_rates(path: Path, base_url: str | None) -> dict[str, float]:
    """model → remembered RPM for this endpoint (None: the built-in simulator); empty if there
    is no usable file. Endpoints are told apart as the response cache does
    (`engine.endpoint.cache_scope`: no user name or password is ever written)."""
    entries = _read(path)
    prefix = cache_scope(base_url) + " "
    return {key[len(prefix) :]: e.rpm for key, e in entries.items() if key.startswith(prefix)}


def save_rates(path: Path, base_url: str | None, learned: list[LearnedRate]) -> None:
    """Merge what this run learned (models that got answers) into the file, atomically."""
    now = time.time()
    fresh = {_key(base_url, r.model): RememberedRate(r.rpm, now) for r in learned if r.requests}
    if not fresh:
        return
    entries = {**_read(path), **fresh}
    newest = sorted(entries.items(), key=lambda item: item[1].updated_at)[-MAX_ENTRIES:]
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".rates.", dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(dict(newest))))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("rates.not_saved", path=str(path), error=str(exc))
        if tmp is not None:  # a full disk: leave no empty temporary file behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _read(path: Path) -> dict[str, RememberedRate]:
    try:
        return _rates_decoder.decode(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, msgspec.DecodeError) as exc:  # a broken file costs a relearn, not the run
        log.warning("rates.unreadable", path=str(path), error=str(exc))
        return {}


def rates_meta(learned: list[LearnedRate]) -> dict[str, str]:
    """The queue meta entry recording this run's learned rates (read by `status`)."""
    return {META_KEY: _learned_encoder.encode(learned).decode()}


def learned_from_meta(value: str | None) -> list[LearnedRate]:
    """What `rates_meta` wrote; empty for a run that wrote nothing (or something unreadable)."""
    if value is None:
        return []
    try:
        return _learned_decoder.decode(value)
    except msgspec.DecodeError:
        return []


class MetaStore(Protocol):
    async def set_meta(self, values: Mapping[str, str]) -> None: ...


async def remember_rates(
    queue: MetaStore, learners: LearnerRegistry | None, base_url: str | None, path: Path | None
) -> None:
    """End of a run: its learned rates into the queue's meta and (with `path`) `rates.json`."""
    if learners is None:
        return
    learned = learners.snapshot()
    if not learned:
        return
    history = _learned_encoder.encode(learners.history()).decode()
    await queue.set_meta({**rates_meta(learned), HISTORY_KEY: history})
    if path is not None:
        save_rates(path, base_url, learned)
    log.info("rates.learned", **{r.model: r.rpm for r in learned})


def render_learned(learned: list[LearnedRate]) -> list[str]:
    """`status` lines: each model's learned rate and its share of 429s (last run)."""
    lines = []
    for r in learned:
        share = 100.0 * r.rate_limited / r.requests if r.requests else 0.0
        lines.append(
            f"  rate learned {r.model}: {r.rpm:.0f} rpm; 429s {r.rate_limited} of "
            f"{r.requests} answers ({share:.1f} %) in the last run"
        )
    return lines
