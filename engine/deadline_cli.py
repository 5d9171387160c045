"""`generate`'s adaptive-deadline flags (see workers/deadline.py), kept out of engine/cli.py."""

from __future__ import annotations

import argparse

from engine.argtypes import positive_int
from workers.deadline import DeadlineConfig

_DEFAULT = DeadlineConfig()


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_deadline_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--adaptive-deadline",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULT.enabled,
        help="abandon and retry a call that runs far beyond calls of the same model and "
        "max_tokens (max(--deadline-floor-s, --deadline-p99-mult x their p99)); "
        "--timeout-s stays the hard cap (default: on)",
    )
    p.add_argument(
        "--deadline-floor-s",
        type=positive_float,
        default=_DEFAULT.floor_s,
        help="never abandon a call sooner than this (default: %(default)s)",
    )
    p.add_argument(
        "--deadline-p99-mult",
        type=positive_float,
        default=_DEFAULT.p99_mult,
        help="abandon beyond this multiple of the observed p99 latency (default: %(default)s)",
    )
    p.add_argument(
        "--deadline-min-samples",
        type=positive_int,
        default=_DEFAULT.min_samples,
        help="completed calls of a model and max_tokens before their p99 is used "
        "(default: %(default)s)",
    )


def deadline_config(args: argparse.Namespace) -> DeadlineConfig:
    return DeadlineConfig(
        enabled=args.adaptive_deadline,
        floor_s=args.deadline_floor_s,
        p99_mult=args.deadline_p99_mult,
        min_samples=args.deadline_min_samples,
    )
