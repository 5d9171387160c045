"""One synthetic persona: a line of `personas.jsonl`, and the 33 attribute names in order.

Line shape: `{"id": "p0000", "attributes": {name: value, ...}, "text": "age: 34\\nsex: ..."}`.
`attributes` holds only the attributes that apply to the person (PERSONA.md section 1: those
that do not apply are absent), in `ATTRIBUTE_NAMES` order; `text` renders them as one
`key: value` line each, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

#: The persona attributes, named and ordered exactly as in PERSONA.md section 1.
ATTRIBUTE_NAMES: Final[tuple[str, ...]] = (
    "age",
    "sex",
    "race",
    "ancestry",
    "household language",
    "education",
    "employment status",
    "class of worker",
    "industry category",
    "occupation category",
    "detailed job description",
    "income",
    "marital status",
    "household type",
    "family presence and age",
    "place of birth",
    "citizenship",
    "veteran status",
    "disability",
    "health insurance",
    "big five scores",
    "defining quirks",
    "mannerisms",
    "personal time",
    "lifestyle",
    "ideology",
    "political views",
    "religion",
    "cognitive difficulty",
    "ability to speak english",
    "vision difficulty",
    "fertility",
    "hearing difficulty",
)

_POSITION: Final[dict[str, int]] = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}


class Persona(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    attributes: dict[str, str]
    text: str


class UnknownAttributeError(ValueError):
    """An attribute name that is not one of the 33 in `ATTRIBUTE_NAMES`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown persona attribute {name!r}")
        self.name = name


def render_text(attributes: Mapping[str, str]) -> str:
    """`key: value` lines in `ATTRIBUTE_NAMES` order, for the attributes present."""
    return "\n".join(
        f"{name}: {attributes[name]}" for name in ATTRIBUTE_NAMES if name in attributes
    )


def make_persona(persona_id: str, attributes: Mapping[str, str]) -> Persona:
    """A persona with its attributes put in canonical order and its text rendered."""
    for name in attributes:
        if name not in _POSITION:
            raise UnknownAttributeError(name)
    ordered = {name: attributes[name] for name in ATTRIBUTE_NAMES if name in attributes}
    return Persona(id=persona_id, attributes=ordered, text=render_text(ordered))


persona_decoder: Final = msgspec.json.Decoder(Persona)
persona_encoder: Final = msgspec.json.Encoder()
