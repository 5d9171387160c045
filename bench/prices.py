"""The price table, as the engine reads it (`engine.prices`: engine/data/prices.json with an
optional user file laid over it), plus a lookup that names the known models on a miss."""

from __future__ import annotations

from engine.prices import Price, PriceTableError, load_prices

__all__ = ["Price", "PriceTableError", "UnknownModel", "load_prices", "price_for"]


class UnknownModel(Exception):
    """No price for `model`; `known` lists the models that have one."""

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(f"no price for model {model!r} (known: {', '.join(known)})")
        self.model = model
        self.known = known


def price_for(table: dict[str, Price], model: str) -> Price:
    try:
        return table[model]
    except KeyError:
        raise UnknownModel(model, sorted(table)) from None
