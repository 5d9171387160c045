"""One colour per variant, the same in every panel of every scenario's picture.

The known variants have fixed colours (a reader learns "engine is blue" once). A variant this
table does not know yet (a scenario added later) gets a colour from the spare list, picked by a
hash of its name (the same name keeps its colour from run to run) and moved on to the next free
one if another variant of the same figure already has it: two variants of one figure never
share a colour.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Iterable

#: colour-blind-safe (Okabe-Ito) where it matters: bare is the neutral baseline; lower-case
#: hex, as matplotlib's to_hex writes them
FIXED: dict[str, str] = {
    "bare": "#555555",
    "engine": "#0072b2",
    "engine-sdk": "#e69f00",
    "engine-fault-free": "#009e73",
    "engine-aiohttp": "#56b4e9",
}
#: for variants FIXED does not name (never one of FIXED's colours)
SPARE: tuple[str, ...] = (
    "#cc79a7",
    "#d55e00",
    "#8c564b",
    "#9467bd",
    "#bcbd22",
    "#17becf",
    "#7f0000",
)


def _generated(index: int) -> str:
    """More colours than SPARE holds: hues a golden angle apart, dark enough to read on white."""
    hue = (0.11 + index * 0.618034) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.65)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def variant_colors(variants: Iterable[str]) -> dict[str, str]:
    """A distinct colour for each of `variants` (in the order given, duplicates ignored)."""
    names = list(dict.fromkeys(variants))
    colors = {name: FIXED[name] for name in names if name in FIXED}
    taken = set(colors.values())
    # unknown names in sorted order: the result depends on the set of names, not their order
    for name in sorted(n for n in names if n not in FIXED):
        start = zlib.crc32(name.encode()) % len(SPARE)
        choices = [SPARE[(start + i) % len(SPARE)] for i in range(len(SPARE))]
        color = next((c for c in choices if c not in taken), None)
        index = 0
        while color is None:
            candidate = _generated(index)
            color = None if candidate in taken else candidate
            index += 1
        colors[name] = color
        taken.add(color)
    return {name: colors[name] for name in names}
