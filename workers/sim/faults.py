"""What the simulator injects into a request: a fault, a latency (policy as data, pure functions).

One uniform draw per completion request, in arrival order, from `random.Random(config.seed)`,
is mapped onto consecutive bands of [0, 1): error, rate limit, timeout, malformed, content filter,
then none.
The position inside a band picks the variant (500 or 503; which broken body), so a seed
always gives the same sequence of faults without a second draw.
"""

from __future__ import annotations

import enum
import math
import random

from workers.sim.config import SimConfig


class Fault(enum.Enum):
    NONE = "none"
    SERVER_ERROR = "500"
    OVERLOADED = "503"
    RATE_LIMITED = "429"
    HANG = "hang"
    TRUNCATED_JSON = "truncated_json"
    NOT_JSON = "not_json"
    NO_CHOICES = "no_choices"
    CONTENT_FILTER = "content_filter"


_VARIANTS: dict[str, tuple[Fault, ...]] = {
    "error_rate": (Fault.SERVER_ERROR, Fault.OVERLOADED),
    "rate_limit_rate": (Fault.RATE_LIMITED,),
    "timeout_rate": (Fault.HANG,),
    "malformed_rate": (Fault.TRUNCATED_JSON, Fault.NOT_JSON, Fault.NO_CHOICES),
    "content_filter_rate": (Fault.CONTENT_FILTER,),
}


class FaultPlan:
    """Consecutive bands of [0, 1), each split evenly between its variants."""

    __slots__ = ("_bands", "any_fault")

    def __init__(self, config: SimConfig) -> None:
        bands: list[tuple[float, float, tuple[Fault, ...]]] = []
        start = 0.0
        for name, variants in _VARIANTS.items():
            rate = float(getattr(config, name))
            if rate > 0.0:
                bands.append((start, start + rate, variants))
                start += rate
        self._bands = tuple(bands)
        self.any_fault = bool(bands)

    def draw(self, u: float) -> Fault:
        """The fault for a uniform draw `u` in [0, 1)."""
        for low, high, variants in self._bands:
            if u < high:
                index = int((u - low) / (high - low) * len(variants))
                return variants[min(index, len(variants) - 1)]
        return Fault.NONE


def in_outage(elapsed_s: float, config: SimConfig, began_s: float | None = None) -> bool:
    """Whether `elapsed_s` after start falls in [began, began + outage_for_s), where the outage
    began at `outage_after_s`, or (with `outage_after_requests`) at `began_s`, when that many
    requests had arrived (None: not yet)."""
    after_s = config.outage_after_s if config.outage_after_requests is None else began_s
    if after_s is None:
        return False
    return after_s <= elapsed_s < after_s + config.outage_for_s


def draw_latency_s(config: SimConfig, rng: random.Random) -> float:
    """The latency of one request: `latency_ms`, or lognormal with that median and sigma."""
    if config.latency_ms <= 0.0:
        return 0.0
    median_s = config.latency_ms / 1000.0
    if config.latency_dist == "fixed":
        return median_s
    return rng.lognormvariate(math.log(median_s), config.latency_sigma)
