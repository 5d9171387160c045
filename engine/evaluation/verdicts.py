"""Reading the bench's replies: the answer out of an answer reply, the verdict out of a judge's.

Both raise `FormatError` when the reply does not follow its format; the pipeline turns that
into `workers.errors.InvalidOutput` (retryable): a reply that does not parse never becomes a
score.
"""

from __future__ import annotations

import re

import msgspec

from schemas.openai import chat_response_decoder


class FormatError(ValueError):
    """A reply that does not follow the format it was asked for."""


class Verdict(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The judge's reply (paper section 5). Score 1 when no revision is needed."""

    chain_of_thought: str
    personalization_critic: str
    helpfulness_critic: str
    conclusion: str
    needs_revision: bool

    @property
    def score(self) -> int:
        return 0 if self.needs_revision else 1


class _Answer(msgspec.Struct, frozen=True):
    answer: str


_verdict_decoder = msgspec.json.Decoder(Verdict)
_answer_decoder = msgspec.json.Decoder(_Answer)
_MARKER = re.compile(r"^\s*ANSWER:[ \t]*", re.MULTILINE)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def reply_text(body: bytes) -> str:
    """The first choice's text of a chat.completion body."""
    return chat_response_decoder.decode(body).choices[0].message.content or ""


def json_text(text: str) -> str:
    """The JSON object in a reply: the whole reply, or inside one ``` fence."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    return fenced.group(1) if fenced else stripped


def parse_verdict(text: str) -> Verdict:
    try:
        return _verdict_decoder.decode(json_text(text))
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise FormatError(f"judge reply is not a verdict: {exc}") from None


def parse_answer(text: str, answer_format: str) -> str:
    """The answer: after the last `ANSWER:` line (marked), or the `answer` key (json)."""
    if answer_format == "json":
        try:
            answer = _answer_decoder.decode(json_text(text)).answer
        except msgspec.DecodeError as exc:
            raise FormatError(f"answer reply is not the JSON asked for: {exc}") from None
    else:
        matches = list(_MARKER.finditer(text))
        if not matches:
            raise FormatError("answer reply has no ANSWER: line")
        answer = text[matches[-1].end() :]
    answer = answer.strip()
    if not answer:
        raise FormatError("empty answer")
    return answer
