"""LLM persona enrichment and the consistency check as data: request bodies and reply parsers.

PERSONA.md section 1, steps 3 and 4. The paper publishes neither prompt; these are ours.

Enrichment rewrites the open-ended fields in `ENRICHED_FIELDS` that a persona has, given the
whole persona and, per field, `THEMES_PER_FIELD` themes drawn from `THEMES` so that coverage
stays diverse. The themes are drawn per (seed, persona id, field) by hash rank, so a request
body depends only on the persona, the config and the seed. The reply is one
`field: value` line per field asked (`parse_enrichment_reply`).

The consistency check asks whether the (enriched) profile is plausible for one real person;
the reply is `PLAUSIBLE: YES|NO` then `REASON: …` (`parse_check_reply`).

Both prompts end in a reply form (`label: <slot>` lines) that a real model reads as an
instruction and the simulator fills (workers/sim_text.py). Parsing is strict: blank lines and
surrounding whitespace are ignored, labels are case-insensitive, anything else that departs
from the form raises MalformedReplyError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from schemas.persona import Persona, make_persona

ENRICHED_FIELDS: Final[tuple[str, ...]] = (
    "detailed job description",
    "personal time",
    "lifestyle",
)

#: High-level categories, written for this project; a few are drawn per persona and field.
THEMES: Final[dict[str, tuple[str, ...]]] = {
    "detailed job description": (
        "daily tasks",
        "tools and equipment",
        "the people served",
        "physical demands",
        "schedule and shifts",
        "decisions and responsibility",
        "workplace setting",
        "skills and training",
    ),
    "personal time": (
        "outdoors",
        "creative",
        "social",
        "domestic",
        "learning",
        "faith-based",
        "sports",
        "digital",
    ),
    "lifestyle": (
        "daily routine",
        "health and fitness",
        "money and spending",
        "family and home",
        "community ties",
        "food and cooking",
        "travel and getting around",
        "pace of life",
    ),
}
THEMES_PER_FIELD: Final = 2

ENRICH_SYSTEM: Final = (
    "You write realistic, specific details for profiles of synthetic people, used to test "
    "whether AI assistants serve people with different values well. Stay consistent with "
    "every attribute you are given. Write plainly: no names, no cliches, no exaggeration."
)
ENRICH_USER: Final = """Here is a profile of one person, one attribute a line:
<<<
{persona}
>>>

Rewrite these attributes so each is specific and concrete and true to everything else in the \
profile, in one or two sentences on a single line: {fields}.
Let these themes guide each attribute where they fit the person (the profile always wins \
over a theme):
{themes}

Do not change or repeat any other attribute. Reply with exactly these lines, in this order, \
and nothing else:
{form}"""

CHECK_SYSTEM: Final = "You review profiles of synthetic people for realism before research use."
CHECK_USER: Final = """Here is a profile of one person, one attribute a line:
<<<
{persona}
>>>

Could all of this be true of one real person living in the United States? Look for \
attributes that contradict each other: age, education, work, income, household, health, \
habits, beliefs, daily life. Unusual combinations are fine, real people are varied: answer NO \
only for a contradiction or for something no real person could be.
Reply with exactly these two lines and nothing else:
PLAUSIBLE: <YES|NO>
REASON: <one sentence>"""


class EnrichConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str
    temperature: float = 0.7
    max_tokens: int = 400


class CheckConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str
    temperature: float = 0.0
    max_tokens: int = 150


class CheckVerdict(msgspec.Struct, frozen=True):
    plausible: bool
    reason: str


class MalformedReplyError(ValueError):
    """A reply that does not follow the form asked; `reply` is the text, `problem` why."""

    def __init__(self, reply: str, problem: str) -> None:
        super().__init__(f"{problem}: {reply[:200]!r}")
        self.reply = reply
        self.problem = problem


def fields_to_enrich(persona: Persona) -> tuple[str, ...]:
    return tuple(name for name in ENRICHED_FIELDS if name in persona.attributes)


def sample_themes(seed: int, persona_id: str, field: str) -> tuple[str, ...]:
    """`THEMES_PER_FIELD` themes of `field`, drawn by hash rank, in `THEMES` order."""

    def rank(theme: str) -> bytes:
        key = f"{seed}\x00{persona_id}\x00{field}\x00{theme}".encode()
        return hashlib.blake2b(key, digest_size=16).digest()

    drawn = set(sorted(THEMES[field], key=rank)[:THEMES_PER_FIELD])
    return tuple(theme for theme in THEMES[field] if theme in drawn)


def _body(system: str, user: str, config: EnrichConfig | CheckConfig, seed: int) -> dict[str, Any]:
    return {
        "model": config.model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "seed": seed,
    }


def build_enrichment_request(
    persona: Persona, config: EnrichConfig, seed: int
) -> dict[str, Any] | None:
    """The chat body rewriting the persona's open-ended fields; None if it has none of them."""
    fields = fields_to_enrich(persona)
    if not fields:
        return None
    themes = "\n".join(
        f"- {name}: {', '.join(sample_themes(seed, persona.id, name))}" for name in fields
    )
    user = ENRICH_USER.format(
        persona=persona.text,
        fields=", ".join(fields),
        themes=themes,
        form="\n".join(f"{name}: <text>" for name in fields),
    )
    return _body(ENRICH_SYSTEM, user, config, seed)


def build_check_request(persona: Persona, config: CheckConfig, seed: int) -> dict[str, Any]:
    """The chat body asking whether the persona is plausible for one real person."""
    user = CHECK_USER.format(persona=persona.text)
    return _body(CHECK_SYSTEM, user, config, seed)


def _labelled_lines(reply: str) -> list[tuple[str, str]]:
    """(lower-case label, value) of each non-blank line; a line without ':' is malformed."""
    pairs: list[tuple[str, str]] = []
    for line in reply.splitlines():
        if not line.strip():
            continue
        label, colon, value = line.partition(":")
        if not colon:
            raise MalformedReplyError(reply, f"a line without a label: {line.strip()[:80]!r}")
        pairs.append((" ".join(label.lower().split()), value.strip()))
    return pairs


def parse_enrichment_reply(reply: str, fields: tuple[str, ...]) -> dict[str, str]:
    """The new value of each field in `fields`: exactly one non-empty line each, no others."""
    values: dict[str, str] = {}
    for label, value in _labelled_lines(reply):
        if label not in fields:
            raise MalformedReplyError(reply, f"unexpected line {label!r}")
        if label in values:
            raise MalformedReplyError(reply, f"{label!r} given twice")
        if not value:
            raise MalformedReplyError(reply, f"{label!r} is empty")
        values[label] = value
    missing = [name for name in fields if name not in values]
    if missing:
        raise MalformedReplyError(reply, f"missing {', '.join(map(repr, missing))}")
    return {name: values[name] for name in fields}


def parse_check_reply(reply: str) -> CheckVerdict:
    """`PLAUSIBLE: YES|NO` then a non-empty `REASON: …`, and nothing else."""
    lines = _labelled_lines(reply)
    if [label for label, _ in lines] != ["plausible", "reason"]:
        raise MalformedReplyError(reply, "expected a PLAUSIBLE line, then a REASON line")
    answer = lines[0][1].strip("*`'\". ").upper()
    if answer not in ("YES", "NO"):
        raise MalformedReplyError(reply, "PLAUSIBLE is neither YES nor NO")
    if not lines[1][1]:
        raise MalformedReplyError(reply, "REASON is empty")
    return CheckVerdict(plausible=answer == "YES", reason=lines[1][1])


def enriched_persona(persona: Persona, values: Mapping[str, str]) -> Persona:
    """The persona with `values` replacing those attributes, its text rendered again."""
    return make_persona(persona.id, {**persona.attributes, **values})
