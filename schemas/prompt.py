"""One prompt of the PERSONA prompt set, and the raw line shapes its loaders decode.

Our prompt file, one JSON object a line: `{"id": "q0001", "topic": "guns", "text": "...?"}`.
PRISM's `conversations.jsonl` (Hugging Face schema): one conversation a line; we read only
`conversation_id` and `opening_prompt` and ignore the rest.

The `*Line` Structs mark every field UNSET when it is absent, so a loader can tell a missing
field (its own error class) from a field of the wrong type (a malformed line) without reading
msgspec's message text.
"""

from __future__ import annotations

from typing import Final

import msgspec


class Prompt(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    id: str
    topic: str
    text: str


#: The field names of a prompt line, in file order.
PROMPT_FIELDS: Final[tuple[str, ...]] = ("id", "topic", "text")


class PromptLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A line of our prompt file before validation: every field may be absent."""

    id: str | msgspec.UnsetType = msgspec.UNSET
    topic: str | msgspec.UnsetType = msgspec.UNSET
    text: str | msgspec.UnsetType = msgspec.UNSET


class PrismConversationLine(msgspec.Struct, frozen=True, gc=False):
    """The two fields we read from a PRISM conversation; the many others are ignored."""

    conversation_id: str | int | msgspec.UnsetType = msgspec.UNSET
    opening_prompt: str | msgspec.UnsetType = msgspec.UNSET


prompt_line_decoder: Final = msgspec.json.Decoder(PromptLine)
prism_line_decoder: Final = msgspec.json.Decoder(PrismConversationLine)
prompt_encoder: Final = msgspec.json.Encoder()
