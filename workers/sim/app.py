"""The built-in OpenAI-compatible LLM simulator: a real aiohttp server for tests and benchmarks.

Endpoints:
- `POST /v1/chat/completions`: a deterministic completion (same body and seed, same text), or
  the configured faults: outage 503, 400 / 404, 429 over the rpm/tpm limits, injected
  429 / 500 / 503 / hang / malformed 200 (see `SimConfig`).
- `GET /v1/models`: `config.models`, or `["sim-small"]`.
- `/v1/files`, `/v1/batches`: the Batch API (`workers.sim.batches`), batches advanced by polls.
- `GET /stats`, `POST /stats/reset`: counters (`workers.sim.stats.SimStats`);
  `GET /stats/batch-submissions`: how many times each custom_id was submitted in a batch.

The parts: `sim_config` (the config), `sim_text` (reply text and token counts), `sim_limits`
(rate-limit buckets), `sim_faults` (fault draws, outage window), `sim_bodies` (encoded
bodies), `sim_stats` (counters), `sim_server` (the handlers); this module assembles them and
runs the server.

    sim = await start_simulator(SimConfig(latency_ms=50, rpm=600))
    ...  # point an OpenAI-compatible client at sim.base_url
    await sim.stop()
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from workers.loops import loop_factory, on_stop_signals
from workers.sim.config import InvalidSimConfig, SimConfig, check_config, config_problems
from workers.sim.server import Simulator
from workers.sim.stats import SimStats

__all__ = [
    "InvalidSimConfig",
    "RunningSimulator",
    "SimConfig",
    "SimStats",
    "config_problems",
    "create_app",
    "run_forever",
    "start_simulator",
]

SIMULATOR_KEY = web.AppKey("simulator", Simulator)
MAX_BODY_BYTES = 256 * 1024 * 1024  # a Batch API input file may hold 200 MB
SHUTDOWN_GRACE_S = 2.0  # pending latencies and hangs are cut short at once; this is a backstop


def create_app(config: SimConfig) -> web.Application:
    """An aiohttp app serving the simulated API; its clocks start when the app starts.

    Raises `InvalidSimConfig` (a ValueError listing every problem) for an unservable config.
    """
    sim = Simulator(check_config(config))
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SIMULATOR_KEY] = sim
    app.on_startup.append(sim.on_startup)
    app.on_shutdown.append(sim.on_shutdown)
    app.router.add_post("/v1/chat/completions", sim.chat_completions)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/stats", sim.stats)
    app.router.add_post("/stats/reset", sim.reset_stats)
    sim.batches.add_routes(app)  # /v1/files, /v1/batches
    return app


class RunningSimulator:
    """A simulator listening on a port; `stop()` (or leaving `async with`) shuts it down."""

    def __init__(self, runner: web.AppRunner, sim: Simulator, host: str, port: int) -> None:
        self._runner = runner
        self._sim = sim
        self.host = host
        self.port = port
        url_host = f"[{host}]" if ":" in host else host  # an IPv6 literal needs brackets
        self.base_url = f"http://{url_host}:{port}/v1"
        self._stopped = False

    def stats(self) -> dict[str, Any]:
        """The same counters as `GET /stats`."""
        snapshot: dict[str, Any] = msgspec.to_builtins(self._sim.snapshot())
        return snapshot

    async def stop(self) -> None:
        """Stop listening, answer pending latencies and hangs with 503, close connections."""
        if self._stopped:
            return
        self._stopped = True
        self._sim.close()
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSimulator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_simulator(
    config: SimConfig, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Start serving `config` on host:port (0 = any free port) and return the handle."""
    app = create_app(config)
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_GRACE_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=4096)
        await site.start()
        bound_port = int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        raise
    return RunningSimulator(runner, app[SIMULATOR_KEY], host, bound_port)


def run_forever(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGINT or SIGTERM, on uvloop when it is installed; then shut down cleanly.

    Prints exactly one line to stdout once listening:
    `simulator listening on http://HOST:PORT/v1`.
    """
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_serve_until_signalled(config, host, port))


async def _serve_until_signalled(config: SimConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    with on_stop_signals(lambda _: stop.set()):
        sim = await start_simulator(config, host, port)
        try:
            print(f"simulator listening on {sim.base_url}", flush=True)
            await stop.wait()
        finally:
            await sim.stop()
