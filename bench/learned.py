"""The learned request rate over a run (issue 15), read from the engine's queue meta.

The engine records, per model, its learned rate at the end of every learning window and at
every cut, with the calls answered and the 429s so far (`ratelimit:history` in the queue's
meta). `learned_series` turns that into bins: the learned rate at the bin's end, the rate the
server let through (its utilisation of the limit) and the share of 429s within the bin.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from engine.learned_rates import HISTORY_KEY
from engine.queue.backends import open_queue, run_exists

_history_decoder = msgspec.json.Decoder(dict[str, list[tuple[float, float, int, int]]])


class LearnedPoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    t_s: float  # bin start, seconds from the learner's start
    learned_rpm: float  # at the bin's end
    accepted_rpm: float  # calls answered without a 429, per minute, over the bin
    utilisation: float | None  # accepted_rpm / the server's limit (None: no limit known)
    share_429: float  # 429s / calls answered within the bin
    answered: int = 0  # calls answered within the bin
    limited: int = 0  # 429s among them


def read_history(run_dir: Path) -> list[tuple[float, float, int, int]]:
    """All models' history points merged (one model in the bench), or [] if none recorded."""
    if not run_exists(run_dir):
        return []
    value = asyncio.run(_history_value(run_dir))
    if value is None:
        return []
    by_model = _history_decoder.decode(value)
    return sorted(point for points in by_model.values() for point in points)


async def _history_value(run_dir: Path) -> str | None:
    """The run's history meta value, read through the engine's queue interface (after the
    measured run has ended: nothing of the engine is imported on the measured path)."""
    queue = await open_queue(run_dir)
    try:
        return await queue.get_meta(HISTORY_KEY)
    finally:
        await queue.close()


#: the learned rate moves every half second: the plot needs bins this fine to show it converge
LEARNED_BIN_S = 1.0


def coarser(points: list[LearnedPoint], factor: int, limit_rpm: float | None) -> list[LearnedPoint]:
    """`factor` consecutive bins merged into one (for a table short enough to read)."""
    if not points:
        return []
    bin_s = points[1].t_s - points[0].t_s if len(points) > 1 else LEARNED_BIN_S
    merged = []
    for i in range(0, len(points), factor):
        chunk = points[i : i + factor]
        answered = sum(p.answered for p in chunk)
        limited = sum(p.limited for p in chunk)
        accepted_rpm = (answered - limited) * 60.0 / (bin_s * len(chunk))
        merged.append(
            LearnedPoint(
                t_s=chunk[0].t_s,
                learned_rpm=chunk[-1].learned_rpm,
                accepted_rpm=round(accepted_rpm, 1),
                utilisation=round(accepted_rpm / limit_rpm, 4) if limit_rpm else None,
                share_429=round(limited / answered, 4) if answered else 0.0,
                answered=answered,
                limited=limited,
            )
        )
    return merged


def learned_series(
    history: list[tuple[float, float, int, int]], bin_s: float, limit_rpm: float | None
) -> list[LearnedPoint]:
    """Per bin of `bin_s`: the learned rate, utilisation of `limit_rpm` and the 429 share."""
    if not history:
        return []
    points: list[LearnedPoint] = []
    previous = (0.0, history[0][1], 0, 0)
    index = 0
    start = 0.0
    while index < len(history):
        end = start + bin_s
        last = previous
        while index < len(history) and history[index][0] < end:
            last = history[index]
            index += 1
        answered = last[2] - previous[2]
        limited = last[3] - previous[3]
        accepted_rpm = (answered - limited) * 60.0 / bin_s
        points.append(
            LearnedPoint(
                t_s=round(start, 3),
                learned_rpm=round(last[1], 1),
                accepted_rpm=round(accepted_rpm, 1),
                utilisation=round(accepted_rpm / limit_rpm, 4) if limit_rpm else None,
                share_429=round(limited / answered, 4) if answered else 0.0,
                answered=answered,
                limited=limited,
            )
        )
        previous = last
        start = end
    return points
