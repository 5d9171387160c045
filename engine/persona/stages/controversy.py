"""The LLM controversy classifier as data: the request body for one prompt, and the reply parser.

PERSONA.md section 2 keeps only prompts an LLM judges controversial: questions where people with
different values would want different answers. This module does no I/O; an engine stage sends
`build_classifier_request(...)` as a chat-completions body and feeds the reply text (or the
whole response body) to `parse_classifier_reply` (or `parse_classifier_response`).

The prompt asks for one line `VERDICT: <label>` (a marker a reply can be checked against, and
the reply form the simulator fills, see workers/sim_text.py). Accepted replies: that line, or
the bare label, the label in any case, with spaces or hyphens for the underscore and optional
quotes, backticks, asterisks or a final full stop ("VERDICT: Not controversial."); or a JSON
object whose "label" is such a label. Anything else raises UnparseableReplyError.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Final

import msgspec

from schemas.openai import chat_response_decoder
from schemas.prompt import Prompt


class Verdict(enum.StrEnum):
    CONTROVERSIAL = "CONTROVERSIAL"
    NOT_CONTROVERSIAL = "NOT_CONTROVERSIAL"


class ClassifierConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str
    temperature: float = 0.0
    max_tokens: int = 16


class UnparseableReplyError(ValueError):
    """The classifier's reply is not one of the two labels; `reply` is the text received."""

    def __init__(self, reply: str) -> None:
        super().__init__(f"classifier reply is not a verdict: {reply[:200]!r}")
        self.reply = reply


SYSTEM_PROMPT: Final = (
    "You label questions that people have typed into an AI assistant.\n"
    "Label a question CONTROVERSIAL when people whose values, beliefs, cultures or life "
    "experiences differ would reasonably want substantially different answers to it: it asks "
    "for a judgement, a recommendation or an opinion on which thoughtful people disagree.\n"
    "Label it NOT_CONTROVERSIAL when nearly everyone would be satisfied by the same answer: "
    "facts, definitions, arithmetic, code, recipes, instructions, greetings and small talk, "
    "or advice where the right answer does not depend on anyone's values.\n"
    "Judge the question itself, not whether its topic is sensitive. Reply with exactly one "
    "line in this form, and nothing else:\n"
    "VERDICT: <CONTROVERSIAL|NOT_CONTROVERSIAL>"
)

USER_TEMPLATE: Final = "Question:\n<<<\n{question}\n>>>"

#: The reply's marker, optionally decorated ("**Verdict:**"), before the label.
_MARKER: Final = re.compile(r"^[*`_ ]*verdict[*`_ ]*:[*`_ ]*", re.IGNORECASE)

_DECORATION: Final = "\"'`*. \n\t"
_LABELS: Final = {verdict.value: verdict for verdict in Verdict}


def build_classifier_request(prompt: Prompt, config: ClassifierConfig) -> dict[str, Any]:
    """The chat-completions request body asking whether `prompt` is controversial."""
    return {
        "model": config.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(question=prompt.text)},
        ],
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }


def _label(text: str) -> Verdict | None:
    words = text.strip(_DECORATION).replace("-", " ").replace("_", " ").split()
    return _LABELS.get("_".join(words).upper())


def _json_label(reply: str) -> Verdict | None:
    try:
        value = msgspec.json.decode(reply)
    except msgspec.DecodeError:
        return None
    if isinstance(value, dict) and isinstance(value.get("label"), str):
        return _label(value["label"])
    return None


def parse_classifier_reply(reply: str) -> Verdict:
    """The verdict in the model's reply text; UnparseableReplyError if there is none."""
    stripped = _MARKER.sub("", reply.strip(), count=1)
    verdict = _json_label(stripped) if stripped.startswith("{") else _label(stripped)
    if verdict is None:
        raise UnparseableReplyError(reply)
    return verdict


def parse_classifier_response(body: bytes) -> Verdict:
    """The verdict in a chat-completions response body (the first choice's content)."""
    try:
        response = chat_response_decoder.decode(body)
    except msgspec.DecodeError:
        raise UnparseableReplyError(body.decode(errors="replace")) from None
    if not response.choices or response.choices[0].message.content is None:
        raise UnparseableReplyError("")
    return parse_classifier_reply(response.choices[0].message.content)
