"""The price table (engine/data/prices.json, USD per million tokens), overridable by a file."""

from __future__ import annotations

from pathlib import Path

import msgspec

from engine.errors import UserError

DEFAULT_PRICES_PATH = Path(__file__).parent / "data" / "prices.json"


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    input_per_mtok: float
    output_per_mtok: float
    source: str = ""
    as_of: str = ""
    batch_share: float = 0.5  # the Batch API's price as a share of this one (OpenAI: -50 %)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class PriceTableError(UserError):
    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path


_decoder = msgspec.json.Decoder(dict[str, Price])


def load_prices(user_file: Path | None = None) -> dict[str, Price]:
    """The shipped table, with a user file's entries replacing or adding models."""
    table = _read(DEFAULT_PRICES_PATH)
    if user_file is not None:
        table.update(_read(user_file))
    return table


def _read(path: Path) -> dict[str, Price]:
    try:
        return _decoder.decode(path.read_bytes())
    except OSError as exc:
        raise PriceTableError(path, f"cannot read: {exc.strerror}") from None
    except msgspec.DecodeError as exc:
        raise PriceTableError(path, f"not a price table: {exc}") from None
