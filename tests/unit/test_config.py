"""One configuration tree: defaults from the Structs, a TOML file, flags over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.config import DEFAULTS, FLAGS, EngineConfig, resolve
from engine.errors import SettingsError
from ratelimits.breaker import BreakerConfig
from ratelimits.limiter import LimitConfig


def _generate(*argv: str) -> EngineConfig:
    args = build_parser("generate").parse_args(["generate", *argv])
    return resolve(args)


def test_no_flags_give_the_struct_defaults() -> None:
    assert _generate() == DEFAULTS
    assert DEFAULTS.run.concurrency == 64
    assert DEFAULTS.run.retry.max_attempts == 5
    assert DEFAULTS.breaker == BreakerConfig()


def test_flags_set_their_place_in_the_tree() -> None:
    config = _generate(
        "--concurrency", "8", "--max-attempts", "3", "--breaker-probe-max-s", "5",
        "--model-rpm", "a=10", "--model-rpm", "b=20", "--no-cache", "--no-progress",
    )  # fmt: skip
    assert config.run.concurrency == 8
    assert config.run.retry.max_attempts == 3
    assert config.breaker.probe_max_s == 5.0
    assert config.limits.model_rpm == {"a": 10.0, "b": 20.0}
    assert config.no_cache is True
    assert config.progress is False


def test_a_config_file_is_read_and_flags_override_it(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        'base_url = "http://127.0.0.1:9/v1"\n'
        "[run]\nconcurrency = 16\ngrace_s = 5.0\n[run.retry]\nmax_attempts = 9\n"
        '[limits]\nrpm = 600.0\n[limits.model_tpm]\n"m" = 1000.0\n'
        "[breaker]\nconsecutive_failures = 3\n"
    )
    config = _generate("--config", str(path), "--concurrency", "32")
    assert config.base_url == "http://127.0.0.1:9/v1"
    assert config.run.concurrency == 32  # the flag wins
    assert config.run.grace_s == 5.0
    assert config.run.retry.max_attempts == 9
    assert config.breaker.consecutive_failures == 3
    limits = config.limits.limiter_config()
    assert limits is not None
    assert limits.default == LimitConfig(rpm=600.0)
    assert limits.models["m"].tpm == 1000.0


@pytest.mark.parametrize(
    ("text", "problem"),
    [("[run]\nconcurency = 3\n", "concurency"), ("[run\n", "not TOML"), ("max_attempts = 'x'", "")],
)
def test_a_bad_config_file_names_the_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=str(path)) as info:
        _generate("--config", str(path))
    assert problem in str(info.value)


def test_help_shows_each_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("generate").parse_args(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "calls in flight (default: 64)" in text
    assert "hard per-request timeout (default: 120.0)" in text
    assert "--breaker-probe-max-s" in text
    assert len(FLAGS) > 20


def test_abbreviated_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        # (`--api` was the abbreviation here until issue 13 made it a flag of its own)
        build_parser("generate").parse_args(["generate", "--api-key", "KEY"])
    assert info.value.code == 2
    assert "--api-key" in capsys.readouterr().err
