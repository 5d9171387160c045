"""The engine's configuration tree: every default written once, in the Structs.

    EngineConfig                  endpoint, cache, prices, progress, built-in simulator
    ├── run: RunConfig            concurrency, timeouts, grace, lease, batches, seed
    │   ├── retry: RetryPolicy    attempts and backoff
    │   └── deadline              the adaptive deadline of hung calls (workers.deadline)
    ├── breaker: BreakerConfig    when an outage pauses dispatch, how it is probed
    ├── limits: LimitFlags        the RPM/TPM budgets, overall and per model
    └── rate_limit                how long a job the server keeps refusing (429) may wait

`add_engine_flags` builds the argparse flags of every command that runs the engine (`generate`,
the LLM stages) from `FLAGS`, with each default in `--help` read from the Structs. A
`--config FILE.toml` decodes into the same tree (unknown keys are an error naming the file);
flags given on the command line override it. `resolve(args)` returns the tree and writes the
resolved values back onto `args`.

A TOML file mirrors the tree:

    base_url = "https://api.openai.com/v1"
    [run]
    concurrency = 128
    [run.retry]
    max_attempts = 8
    [limits]
    rpm = 5000
    [limits.model_rpm]
    "gpt-4o" = 500
    [breaker]
    probe_max_s = 10
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from engine.argtypes import non_negative_int, positive_float, positive_int
from engine.batch.config import BatchConfig
from engine.errors import SettingsError
from engine.run import RunConfig
from ratelimits.breaker import BreakerConfig
from ratelimits.limiter import LimitConfig, LimitsConfig, ModelLimits
from workers.ratelimited import RateLimitPolicy


class LimitFlags(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Client-side budgets (None: unlimited)."""

    rpm: float | None = None
    tpm: float | None = None
    model_rpm: dict[str, float] = msgspec.field(default_factory=dict)
    model_tpm: dict[str, float] = msgspec.field(default_factory=dict)

    def limiter_config(self) -> LimitsConfig | None:
        """The limiter's configuration, or None when no budget is set."""
        if self.rpm is None and self.tpm is None and not self.model_rpm and not self.model_tpm:
            return None
        models = {
            name: ModelLimits(
                **{
                    k: v
                    for k, v in (
                        ("rpm", self.model_rpm.get(name)),
                        ("tpm", self.model_tpm.get(name)),
                    )
                    if v
                }
            )
            for name in {*self.model_rpm, *self.model_tpm}
        }
        return LimitsConfig(default=LimitConfig(rpm=self.rpm, tpm=self.tpm), models=models)


class EngineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else the built-in simulator
    api_key_env: str = "OPENAI_API_KEY"
    transport: Literal["http1", "aiohttp", "sdk"] = "http1"
    cache: Path | None = None  # None: $PERSONA_TESTBED_CACHE or ~/.cache/persona-testbed/…
    no_cache: bool = False
    prices: Path | None = None  # None: engine/data/prices.json
    progress: bool | None = None  # None: on a terminal
    sim_latency_ms: float = 0.0
    learn_rate: bool = True  # learn the allowed request rate from 429s (ratelimits.learned)
    # issue 16: put FAILED jobs back with fresh attempts before running (None: no; (): all;
    # else those whose HTTP status or error code is listed, engine.queue.failure_codes)
    retry_failed: tuple[str, ...] | None = None
    run: RunConfig = RunConfig()
    breaker: BreakerConfig = BreakerConfig()
    limits: LimitFlags = LimitFlags()
    rate_limit: RateLimitPolicy = RateLimitPolicy()
    # issue 13: online calls, or the Batch API's files and batches (engine.batch)
    api: Literal["online", "batch"] = "online"
    batch: BatchConfig = BatchConfig()


DEFAULTS = EngineConfig()


class Flag(msgspec.Struct, frozen=True):
    """One command-line flag and the place in the tree it sets."""

    name: str
    path: tuple[str, ...]
    help: str
    parse: Callable[[str], Any] | None = None
    action: str | type[argparse.Action] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    nargs: str | None = None
    const: Any = None

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")


def _model_value(text: str) -> tuple[str, float]:
    model, sep, number = text.rpartition("=")
    try:
        value = float(number)
    except ValueError:
        sep = ""
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"takes MODEL=N, got {text!r}")
    return model, value


def _codes(text: str) -> tuple[str, ...]:
    codes = tuple(code.strip() for code in text.split(",") if code.strip())
    if not codes:
        raise argparse.ArgumentTypeError(f"takes CODE[,CODE…], got {text!r}")
    return codes


def _number_of(field: str) -> Callable[[str], Any]:
    return positive_int if isinstance(getattr(BreakerConfig(), field), int) else float


_BREAKER_HELP = {
    "window_calls": "calls in the breaker's sliding window",
    "min_failures": "outage-like failures in the window before the breaker may open",
    "failure_ratio": "share of outage-like failures in the window that opens the breaker",
    "consecutive_failures": "outage-like failures in a row that open the breaker",
    "probe_initial_s": "first probe this long after the breaker opens",
    "probe_share": "later probes every this share of the outage so far",
    "probe_max_s": "longest time between probes",
}

FLAGS: tuple[Flag, ...] = (
    Flag(
        "--base-url",
        ("base_url",),
        "OpenAI-compatible API (default: $OPENAI_BASE_URL, else the built-in simulator)",
    ),
    Flag(
        "--api-key-env",
        ("api_key_env",),
        "environment variable holding the API key (never logged or stored)",
    ),
    Flag(
        "--transport",
        ("transport",),
        "HTTP client of the calls",
        choices=("http1", "aiohttp", "sdk"),
    ),
    Flag("--concurrency", ("run", "concurrency"), "calls in flight", positive_int),
    Flag("--timeout-s", ("run", "timeout_s"), "hard per-request timeout", float),
    Flag(
        "--grace-s",
        ("run", "grace_s"),
        "on SIGINT/SIGTERM, how long in-flight calls may finish",
        float,
    ),
    Flag(
        "--adaptive-deadline",
        ("run", "deadline", "enabled"),
        "abandon and retry a call that runs far beyond calls of the same model and max_tokens "
        "(max(--deadline-floor-s, --deadline-p99-mult x their p99)); --timeout-s stays the "
        "hard cap",
        action=argparse.BooleanOptionalAction,
    ),
    Flag(
        "--deadline-floor-s",
        ("run", "deadline", "floor_s"),
        "never abandon a call sooner than this",
        positive_float,
    ),
    Flag(
        "--deadline-p99-mult",
        ("run", "deadline", "p99_mult"),
        "abandon beyond this multiple of the observed p99 latency",
        positive_float,
    ),
    Flag(
        "--deadline-min-samples",
        ("run", "deadline", "min_samples"),
        "completed calls of a model and max_tokens before their p99 is used",
        positive_int,
    ),
    Flag("--lease-s", ("run", "lease_s"), "lease of a claimed job (renewed while held)", float),
    Flag("--seed", ("run", "seed"), "seed of the run (sampling, jitter, request bodies)", int),
    Flag(
        "--max-attempts",
        ("run", "retry", "max_attempts"),
        "attempts per job before it fails",
        positive_int,
    ),
    Flag(
        "--retry-base-s",
        ("run", "retry", "base_s"),
        "first retry delay; doubles each attempt (with jitter). Short on purpose: outages are "
        "the circuit breaker's job and 429s carry Retry-After",
        float,
    ),
    Flag("--retry-max-s", ("run", "retry", "max_s"), "longest retry delay", float),
    Flag("--rpm", ("limits", "rpm"), "requests per minute budget (default: unlimited)", float),
    Flag("--tpm", ("limits", "tpm"), "tokens per minute budget (default: unlimited)", float),
    Flag(
        "--learn-rate",
        ("learn_rate",),
        "learn the request rate the server allows from its 429s (below --rpm if given), "
        "starting from the rate remembered in rates.json beside the cache",
        action=argparse.BooleanOptionalAction,
    ),
    Flag(
        "--stop-after-same-errors",
        ("run", "stop_after_same_errors"),
        "stop the run when this many calls of one stage and model are rejected with the same "
        "permanent error (HTTP status and error code: a wrong key, a mistyped model) and none "
        "has succeeded; those jobs go back to the queue, none is marked failed (exit 4). "
        "0: never stop",
        non_negative_int,
    ),
    Flag(
        "--retry-failed",
        ("retry_failed",),
        "put the run's failed jobs back in the queue with fresh attempts and run them; "
        "=CODE,... only those failed with one of these HTTP statuses or error codes "
        "(400, invalid_api_key, model_not_found, content_filter, PermanentError, ...)",
        _codes,
        nargs="?",
        const=(),
        metavar="CODE,...",
    ),
    Flag(
        "--rate-limit-give-up-s",
        ("rate_limit", "give_up_s"),
        "429s never spend --max-attempts; a job the server keeps refusing fails this many "
        "seconds after its first 429",
        positive_float,
    ),
    Flag(
        "--model-rpm",
        ("limits", "model_rpm"),
        "per-model requests per minute (repeat for several models)",
        _model_value,
        action="append",
        metavar="MODEL=N",
    ),
    Flag(
        "--model-tpm",
        ("limits", "model_tpm"),
        "per-model tokens per minute (repeat for several models)",
        _model_value,
        action="append",
        metavar="MODEL=N",
    ),
    Flag(
        "--cache",
        ("cache",),
        "response cache shared across runs (default: $PERSONA_TESTBED_CACHE or "
        "~/.cache/persona-testbed/cache.sqlite)",
        Path,
    ),
    Flag(
        "--no-cache",
        ("no_cache",),
        "no deduplication: every request is paid, nothing is cached",
        action="store_true",
    ),
    Flag(
        "--prices",
        ("prices",),
        "price table overriding engine/data/prices.json",
        Path,
    ),
    Flag(
        "--progress",
        ("progress",),
        "live progress display (default: on a terminal)",
        action=argparse.BooleanOptionalAction,
    ),
    Flag(
        "--sim-latency-ms",
        ("sim_latency_ms",),
        "latency of the built-in simulator when it is used",
        float,
    ),
    Flag(
        "--api",
        ("api",),
        "online: one call per job; batch: the Batch API (/v1/files + /v1/batches, 50 %% of "
        "the price, results within 24 h), in waves as jobs become ready",
        choices=("online", "batch"),
    ),
    Flag(
        "--batch-max-requests",
        ("batch", "max_requests"),
        "requests per batch input file (--api batch)",
        positive_int,
    ),
    Flag("--batch-max-bytes", ("batch", "max_bytes"), "bytes per batch input file", positive_int),
    Flag(
        "--batch-max-enqueued-tokens",
        ("batch", "max_enqueued_tokens"),
        "estimated tokens held by open batches at once, as the provider's enqueued-token "
        "limit (default: no cap)",
        positive_int,
    ),
    Flag("--batch-max-open", ("batch", "max_open"), "open batches at once", positive_int),
    Flag(
        "--batch-poll-s",
        ("batch", "poll_s"),
        "first poll of a batch this long after it is submitted",
        positive_float,
    ),
    Flag(
        "--batch-poll-max-s",
        ("batch", "poll_max_s"),
        "longest wait between polls (the wait grows by --batch-poll-backoff)",
        positive_float,
    ),
    Flag(
        "--batch-poll-backoff",
        ("batch", "poll_backoff"),
        "factor of the wait between polls",
        positive_float,
    ),
    Flag(
        "--batch-cancel",
        ("batch", "cancel"),
        "cancel this run's open batches, keep what they delivered, and stop",
        action="store_true",
    ),
    *(
        Flag(f"--breaker-{field.replace('_', '-')}", ("breaker", field), text, _number_of(field))
        for field, text in _BREAKER_HELP.items()
    ),
)


def default_of(path: Sequence[str], config: EngineConfig = DEFAULTS) -> Any:
    value: Any = config
    for part in path:
        value = getattr(value, part)
    return value


def add_engine_flags(
    parser: argparse.ArgumentParser, *, skip: Sequence[str] = (), title: str = "engine"
) -> None:
    """The engine's flags (all but `skip`), each with its default shown, and --config."""
    group = parser.add_argument_group(title)
    group.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE.toml",
        help="engine settings as TOML (the tree of engine.config.EngineConfig); flags override",
    )
    for flag in FLAGS:
        if flag.name in skip:
            continue
        default = default_of(flag.path)
        shown = "" if default is None or "(default" in flag.help else f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": argparse.SUPPRESS}
        if flag.action is not None:
            kwargs["action"] = flag.action
        if flag.parse is not None:
            kwargs["type"] = flag.parse
        if flag.choices is not None:
            kwargs["choices"] = flag.choices
        if flag.metavar is not None:
            kwargs["metavar"] = flag.metavar
        if flag.nargs is not None:
            kwargs["nargs"] = flag.nargs
            kwargs["const"] = flag.const
        group.add_argument(flag.name, help=flag.help + shown, **kwargs)


def load_toml(path: Path) -> EngineConfig:
    """A configuration file, decoded into the tree; SettingsError naming the file if bad."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not TOML: {exc}") from None
    try:
        return msgspec.convert(raw, EngineConfig, dec_hook=_path_hook)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{path}: {exc}") from None


def _path_hook(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def resolve(args: argparse.Namespace) -> EngineConfig:
    """Defaults ← --config file ← flags given; the result is also written onto `args`."""
    config_path: Path | None = getattr(args, "config", None)
    config = load_toml(config_path) if config_path is not None else DEFAULTS
    for flag in FLAGS:
        if hasattr(args, flag.dest):
            value = getattr(args, flag.dest)
            if flag.action == "append":
                value = {**default_of(flag.path, config), **dict(value)}
            config = _replace(config, flag.path, value)
    for flag in FLAGS:
        setattr(args, flag.dest, default_of(flag.path, config))
    return config


def resolve_or_report(args: argparse.Namespace) -> EngineConfig | None:
    """`resolve`, or None after printing why the settings cannot be used (for commands)."""
    try:
        return resolve(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _replace(node: Any, path: Sequence[str], value: Any) -> Any:
    head, *rest = path
    new = value if not rest else _replace(getattr(node, head), rest, value)
    return msgspec.structs.replace(node, **{head: new})
