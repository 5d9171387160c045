"""The baseline: a bare aiohttp client firing the same requests at the same server.

No queue, no persistence, no retries, no response decoding: the ceiling for a Python client on
this machine. `python -m bench bare …` runs it as its own process (on uvloop, like the engine)
so its CPU time and peak RSS are measured the same way as the engine's.
"""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

import aiohttp
import msgspec

from schemas.batch import BatchInputLine
from workers import loops

_line_decoder = msgspec.json.Decoder(BatchInputLine)
_encoder = msgspec.json.Encoder()


class BareResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one bare run measured; `latency_ms[i]` and `finished_s[i]` belong to request i's
    completion order, `finished_s` counted from the first request's start."""

    ok: int  # 200 answers
    by_status: dict[str, int]
    elapsed_s: float
    latency_ms: list[float]
    finished_s: list[float]
    cpu_s: float = 0.0  # the whole process (user + system)
    startup_cpu_s: float = 0.0  # of which before the first request (imports, reading bodies)
    peak_rss_mb: float = 0.0


bare_result_decoder = msgspec.json.Decoder(BareResult)


def load_bodies(path: Path) -> list[bytes]:
    with path.open("rb") as handle:
        return [_encoder.encode(_line_decoder.decode(line).body) for line in handle if line.strip()]


async def fire(base_url: str, bodies: list[bytes], concurrency: int) -> BareResult:
    """Send every body once with `concurrency` tasks; record each call's latency and finish."""
    url = base_url.rstrip("/") + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    statuses: dict[int, int] = {}
    latency_ms: list[float] = []
    finished_s: list[float] = []
    next_index = 0
    clock = time.perf_counter
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                sent = clock()
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    status = resp.status
                done = clock()
                statuses[status] = statuses.get(status, 0) + 1
                latency_ms.append((done - sent) * 1000.0)
                finished_s.append(done - started)

        started = clock()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = clock() - started
    return BareResult(
        ok=statuses.get(200, 0),
        by_status={str(k): v for k, v in sorted(statuses.items())},
        elapsed_s=elapsed,
        latency_ms=latency_ms,
        finished_s=finished_s,
    )


def bare_main(requests: Path, base_url: str, concurrency: int, out: Path) -> int:
    """The `python -m bench bare` process: fire, add this process's resource usage, write."""
    bodies = load_bodies(requests)
    startup_cpu_s = time.process_time()
    result = loops.run(lambda: fire(base_url, bodies, concurrency))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = msgspec.structs.replace(
        result,
        cpu_s=usage.ru_utime + usage.ru_stime,
        startup_cpu_s=startup_cpu_s,
        peak_rss_mb=usage.ru_maxrss / 1024.0,
    )
    out.write_bytes(_encoder.encode(result))
    return 0
