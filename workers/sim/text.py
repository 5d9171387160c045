"""Deterministic reply text and token counts for the simulator (pure functions, no I/O).

A request is fingerprinted with blake2b over its raw body, keyed by the config seed. Each
choice's words come from a SHAKE-128 stream of that fingerprint and the choice index: the
stream is the PRNG (one C call per reply instead of a Python `random.Random` seeding plus a
Python-level loop), and each of its bytes picks one word of a 256-word vocabulary. The same
body and seed always give the same text; any change to the body changes it.

Reply length: the first two stream bytes pick a length uniformly in
[mean/2, 3*mean/2], so the mean is `output_tokens`; it is then capped by the request's
`max_completion_tokens` / `max_tokens` (finish_reason "length"). 1 word = 1 token.

Formats the PERSONA pipeline parses:
- any message contains "REVISED PREFERENCE:" -> "REVISED PREFERENCE: <words> DONE"
- else any message contains "EVALUATION:" -> "EVALUATION: <words> SUGGESTIONS: <words> DONE"
- else any message holds reply-form lines `LABEL: <SLOT>` (a whole line; see `reply_form`)
  -> one `LABEL: value` line per form line, in order: a slot `<A|B|...>` gets one option
  (the first three times in four, else one of the others), any other slot gets words;
- else plain words.
"REVISED PREFERENCE:" is checked first because a revise prompt quotes the critique (which
contains "EVALUATION:"), while a critique prompt never asks for a revised preference.
Reply forms serve the optional LLM stages (engine.persona.stages.classify: `VERDICT:`,
engine.persona.stages.enrich: the enriched fields and `PLAUSIBLE:`).
"""

from __future__ import annotations

import hashlib
import operator
import re
from typing import Literal, NamedTuple

from schemas.openai import ChatMessage

_WORDS = """
the of and to in is that it for on with as was be by this are or from at an but not have
they which one you were all we can her has there been if more when will would who so no
answer question people value values time life world family work community friend friends
should could might often many most some each other about into than then them these those
because while where after before since during between through across around over under
again always never sometimes perhaps likely clearly simply really quite rather very much
good better best fair just kind honest open careful thoughtful balanced different similar
important personal public private local global social economic political cultural moral
health money home school city country nation history future present past change choice
choices idea ideas view views belief beliefs reason reasons evidence example examples
approach approaches context detail details point points issue issues concern concerns
benefit benefits risk risks cost costs need needs goal goals plan plans story stories
consider considered suggest suggests support supports respect respects help helps
understand understands explain explains offer offers prefer prefers feel feels think
thinks know knows want wants make makes take takes give gives find finds keep keeps
short clear direct simple brief useful practical gentle warm calm steady modest
language tone style length structure response responses reader readers user users
perspective perspectives experience experiences background backgrounds tradition
traditions faith science nature freedom safety trust care balance growth learning
careers neighbors habits weekend morning evening
"""

VOCAB: tuple[str, ...] = tuple(_WORDS.split())
if len(set(VOCAB)) != 256 or len(VOCAB) != 256:  # one stream byte picks one word
    raise RuntimeError(f"the simulator vocabulary must hold 256 distinct words, not {len(VOCAB)}")

EVALUATION = "EVALUATION:"
SUGGESTIONS = "SUGGESTIONS:"
REVISED = "REVISED PREFERENCE:"
DONE = "DONE"
_REVISED_WORDS = tuple(REVISED.split())  # two words, so two tokens


# The reply formats. Plain strings (not an Enum): they are compared and hashed per request.
ReplyKind = Literal["plain", "evaluation", "revision"]
PLAIN: ReplyKind = "plain"
EVALUATION_KIND: ReplyKind = "evaluation"  # EVALUATION: ... SUGGESTIONS: ... DONE
REVISION_KIND: ReplyKind = "revision"  # REVISED PREFERENCE: ... DONE

# The shortest reply of each kind that still has at least one word in every part.
MIN_WORDS: dict[ReplyKind, int] = {PLAIN: 1, REVISION_KIND: 4, EVALUATION_KIND: 5}


#: A reply-form line: `label: <slot>` alone on its line; `<A|B>` lists options.
_FORM_LINE = re.compile(r"^([A-Za-z][A-Za-z ]{0,60}): <([^<>\n]+)>[ \t]*$", re.MULTILINE)
_FORM_HINT = ": <"  # a cheap substring test before the regex (plain prompts skip it)
FIRST_OPTION_OUT_OF_256 = 192  # the first option of a slot three times in four


class FormField(NamedTuple):
    label: str
    options: tuple[str, ...]  # empty: free text


def reply_form(messages: list[ChatMessage]) -> tuple[FormField, ...]:
    """The reply-form lines of all messages, in order (empty when there are none)."""
    fields: list[FormField] = []
    for message in messages:
        content = message.content
        if content and _FORM_HINT in content:
            for label, slot in _FORM_LINE.findall(content):
                options = tuple(o.strip() for o in slot.split("|")) if "|" in slot else ()
                fields.append(FormField(label, options))
    return tuple(fields)


def fingerprint(body: bytes, key: bytes) -> bytes:
    """16-byte blake2b digest of the raw request body, keyed by the config seed."""
    return hashlib.blake2b(body, digest_size=16, key=key).digest()


def seed_key(seed: int) -> bytes:
    """The blake2b key for a config seed (at most 64 bytes, as blake2b requires)."""
    return str(seed).encode()[:64]


def reply_kind(messages: list[ChatMessage]) -> ReplyKind:
    kind = PLAIN
    for message in messages:
        content = message.content
        if content:
            if REVISED in content:
                return REVISION_KIND
            if EVALUATION in content:
                kind = EVALUATION_KIND
    return kind


def prompt_tokens(messages: list[ChatMessage]) -> int:
    """ceil(characters of all contents / 4) + 4 per message."""
    chars = 0
    for message in messages:  # a plain loop: cheaper than sum() over a generator
        if message.content:
            chars += len(message.content)
    return -(-chars // 4) + 4 * len(messages)


class ReplyMaker:
    """Replies of mean length `mean_words` (built once per simulator; `reply` is pure)."""

    __slots__ = ("max_words", "mean_words")

    def __init__(self, mean_words: int) -> None:
        self.mean_words = mean_words
        # lengths are in [mean/2, 3*mean/2]; the stream holds 2 length bytes + the longest reply
        self.max_words = max(*MIN_WORDS.values(), (3 * mean_words + 1) // 2)

    def length(self, head: int, kind: ReplyKind) -> int:
        """The uncapped length for a 16-bit `head`: round(mean * (0.5 + head / 65536))."""
        return max(MIN_WORDS[kind], (self.mean_words * (32768 + head) + 32768) >> 16)

    def reply(
        self, fp: bytes, choice_index: int, kind: ReplyKind, cap: int | None
    ) -> tuple[str, int, bool]:
        """(text, completion tokens, truncated) for one choice of the request `fp`."""
        stream = hashlib.shake_128(fp + choice_index.to_bytes(4, "little")).digest(
            2 + self.max_words
        )
        total = self.length(stream[0] << 8 | stream[1], kind)
        truncated = cap is not None and total > cap
        if kind == PLAIN:  # the hot path: no markers, cut the stream itself
            count = cap if cap is not None and truncated else total
            return " ".join(_pick(stream[2 : 2 + count])), count, truncated
        tokens = _layout(kind, stream[2 : 2 + total])
        if cap is not None and truncated:
            tokens = tokens[:cap]
        return " ".join(tokens), len(tokens), truncated

    def form_reply(
        self, fp: bytes, choice_index: int, form: tuple[FormField, ...], cap: int | None
    ) -> tuple[str, int, bool]:
        """(text, completion tokens, truncated): one `label: value` line per form field."""
        free = sum(1 for field in form if not field.options)
        words_room = max(self.max_words, free)
        stream = hashlib.shake_128(fp + b"form" + choice_index.to_bytes(4, "little")).digest(
            2 + len(form) + words_room
        )
        total = max(free, self.length(stream[0] << 8 | stream[1], PLAIN)) if free else 0
        words = iter(_pick(stream[2 + len(form) : 2 + len(form) + total]))
        tokens: list[str] = []
        for position, field in enumerate(form):
            label = field.label.split()
            label[-1] += ":"
            label[0] = f"\n{label[0]}" if tokens else label[0]
            if field.options:
                value = [_option(field.options, stream[2 + position])]
            else:
                free -= 1
                value = [next(words) for _ in range(1 + (total - 1) // (free + 1))]
                total -= len(value)
            tokens += [*label, *value]
        truncated = cap is not None and len(tokens) > cap
        if cap is not None and truncated:
            tokens = tokens[:cap]
        return " ".join(tokens).replace(" \n", "\n"), len(tokens), truncated


def _option(options: tuple[str, ...], byte: int) -> str:
    if byte < FIRST_OPTION_OUT_OF_256 or len(options) == 1:
        return options[0]
    return options[1 + byte % (len(options) - 1)]


def _pick(stream: bytes) -> tuple[str, ...]:
    """One vocabulary word per byte of `stream` (itemgetter: one C call for all of them)."""
    if len(stream) < 2:  # itemgetter with one index returns the item, not a tuple
        return tuple(VOCAB[b] for b in stream)
    words: tuple[str, ...] = operator.itemgetter(*stream)(VOCAB)
    return words


def _layout(kind: ReplyKind, stream: bytes) -> list[str]:
    """The marked-up reply: as many tokens as `stream` has bytes (markers use some of them)."""
    if kind == REVISION_KIND:
        return [*_REVISED_WORDS, *_pick(stream[3:]), DONE]
    words = _pick(stream[3:])
    split = (len(words) + 1) // 2
    return [EVALUATION, *words[:split], SUGGESTIONS, *words[split:], DONE]
