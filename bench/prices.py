"""The price table: engine/data/prices.json, optionally overlaid with a user file (`--prices`).

Format: {"model": {"input_per_mtok": USD, "output_per_mtok": USD, "source": "...",
"as_of": "YYYY-MM"}, ...}. A user file's entries replace same-named entries and add new ones.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import msgspec

from bench.measure import Price

_table_decoder = msgspec.json.Decoder(dict[str, Price])


class PriceTableError(Exception):
    """A price file that cannot be read or does not have the expected shape."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


class UnknownModel(Exception):
    """No price for `model`; `known` lists the models that have one."""

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(f"no price for model {model!r} (known: {', '.join(known)})")
        self.model = model
        self.known = known


def _decode(data: bytes, origin: str) -> dict[str, Price]:
    try:
        return _table_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PriceTableError(origin, str(exc)) from None


def default_prices() -> dict[str, Price]:
    resource = importlib.resources.files("engine") / "data" / "prices.json"
    return _decode(resource.read_bytes(), "engine/data/prices.json")


def load_prices(user_file: Path | None = None) -> dict[str, Price]:
    """The default table, with `user_file`'s entries laid over it."""
    table = default_prices()
    if user_file is not None:
        try:
            data = user_file.read_bytes()
        except OSError as exc:
            raise PriceTableError(str(user_file), f"cannot read: {exc.strerror}") from None
        table |= _decode(data, str(user_file))
    return table


def price_for(table: dict[str, Price], model: str) -> Price:
    try:
        return table[model]
    except KeyError:
        raise UnknownModel(model, sorted(table)) from None
