"""The baseline: a bare aiohttp client firing the same requests at the same server.

No queue, no persistence, no output: the ceiling for a Python client on this machine.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import msgspec

from schemas.batch import BatchInputLine

_line_decoder = msgspec.json.Decoder(BatchInputLine)
_encoder = msgspec.json.Encoder()


def load_bodies(path: Path) -> list[bytes]:
    with path.open("rb") as handle:
        return [_encoder.encode(_line_decoder.decode(line).body) for line in handle if line.strip()]


async def fire(base_url: str, bodies: list[bytes], concurrency: int) -> tuple[int, float]:
    """Send every body once with `concurrency` tasks; return (completed 200s, seconds)."""
    url = base_url.rstrip("/") + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    ok = 0
    next_index = 0
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal ok, next_index
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    ok += resp.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok, time.perf_counter() - started
