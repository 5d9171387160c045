"""Real parts for integration tests: the simulator and the engine as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "simulator listening on "


class Sim:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str) -> None:
        self.process = process
        self.base_url = base_url

    def stats(self) -> dict[str, Any]:
        root = self.base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/stats", timeout=10) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def completion_status(self) -> int:
        """The HTTP status of one small completion request (counted in the stats like any)."""
        body = {"model": "sim-small", "messages": [{"role": "user", "content": "up?"}]}
        probe = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(probe, timeout=10) as resp:
                status: int = resp.status
        except urllib.error.HTTPError as error:
            status = error.code
            error.close()
        return status


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Poll `condition` until it holds; the timeout is generous, a slow machine only waits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def engine_process(log_path: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`python -m engine ARGS` as a child process, its stderr (the JSON log) in `log_path`;
    killed and reaped on the way out whatever happened, its pipes closed."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            engine_cmd(*args), cwd=ROOT, env=engine_env(), stdout=subprocess.PIPE,
            stderr=log, text=True,
        )  # fmt: skip
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


def logged(log_path: Path, event: str) -> bool:
    """Whether the engine's JSON log at `log_path` holds an `event` line."""
    return f'"event": "{event}"' in log_path.read_text()


@contextlib.contextmanager
def simulator(*args: str) -> Iterator[Sim]:
    """`python -m engine simulate --port 0 ARGS` as a child process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "simulate", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        assert line.startswith(PREFIX), f"simulator said {line!r}"
        yield Sim(process, line.removeprefix(PREFIX))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def engine_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(extra or {})
    return env


def engine_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def run_engine(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        engine_cmd(*args),
        cwd=ROOT,
        env=engine_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_lines(path: Path, lines: Sequence[dict[str, Any] | str]) -> Path:
    with path.open("w") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def request(custom_id: str, text: str = "Is it fair?", model: str = "sim-small") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16},
    }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as handle:
        return [json.loads(line) for line in handle]


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` served on a free port of 127.0.0.1; yields its `/v1` base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()
