"""The shared response cache never serves one endpoint's answers for another's request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.endpoint import BUILTIN_SIMULATOR_SCOPE, cache_scope
from tests.helpers import read_jsonl, request, run_engine, simulator, write_lines

N = 200


def _run(tmp_path: Path, name: str, base_url: str, requests: Path) -> list[dict[str, Any]]:
    run_dir = tmp_path / name
    result = run_engine("generate", "--requests", str(requests), "--run-dir", str(run_dir),
                        "--base-url", base_url, "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return read_jsonl(run_dir / "results.jsonl")


def test_another_endpoint_gets_every_call_and_the_same_one_none(tmp_path: Path) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request(f"r{i}", f"q {i}?") for i in range(N)])
    with simulator("--seed", "1") as a, simulator("--seed", "2") as b:
        first = _run(tmp_path, "a1", a.base_url, requests)
        assert a.stats()["completions_served"] == N
        on_b = _run(tmp_path, "b1", b.base_url, requests)
        assert b.stats()["completions_served"] == N  # nothing of A's served for B
        assert not any(line["engine"].get("cached") for line in on_b)
        again = _run(tmp_path, "a2", a.base_url, requests)
        assert a.stats()["completions_served"] == N  # A's own answers come from the cache
        assert all(line["engine"].get("cached") for line in again)
    bodies = {line["custom_id"]: line["response"]["body"] for line in first}
    assert {line["custom_id"]: line["response"]["body"] for line in again} == bodies


def test_scope_normalises_the_url_and_keeps_no_secret() -> None:
    assert cache_scope("https://API.example.com:443/v1/") == "https://api.example.com/v1"
    assert cache_scope("http://user:sk-secret@127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert cache_scope("http://127.0.0.1:8000/v1") != cache_scope("http://127.0.0.1:8001/v1")
    assert cache_scope("http://[::1]:8000/v1?x=1#f") == "http://[::1]:8000/v1"
    assert cache_scope(None) == BUILTIN_SIMULATOR_SCOPE
