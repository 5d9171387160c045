"""The bench's prompts: the four conditioning modes, the answer format, the judge.

Our own wording of the paper's intent (PERSONA.md section 5). The answer is read from a
marked section (`ANSWER:` to the end of the reply; `--answer-format marked`) or from a JSON
object requested with `response_format` (`--answer-format json`): never from a second call.
The judge is asked for a JSON object through `response_format` (a json_schema); a reply that
does not parse is a retryable format error (engine.evaluation.verdicts).

`TEMPLATE_VERSION` is a digest of every text here: it is in the run's signature and reports.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

MODES: Final = ("baseline", "output_only", "chain_of_thought", "demographic_summary")

_PLAIN_SYSTEM = (
    "You are a helpful assistant. Answer the user's question helpfully and honestly for the user."
)
_PERSONA_SYSTEM = """You are a helpful assistant talking to this user:
{persona}

Personalise your answer to this user subtly: let who they are shape what you say and how,
but never quote or mention their attributes."""

#: what each mode asks for before the answer (label, slot), in order
PREAMBLE: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "baseline": (),
    "output_only": (),
    "chain_of_thought": (("REASONING", "think step by step about how to answer"),),
    "demographic_summary": (
        ("SUMMARY", "summarise the user's attributes relevant to the question"),
    ),
}

_MARKED_TAIL = "\n\nReply in exactly this format, one label per line:\n{lines}"
_JSON_TAIL = "\n\nReply with a JSON object with the keys {keys}; `answer` is your answer."

JUDGE_SYSTEM = (
    "You are a critic. You read a question a specific person asked, the answer they received "
    "and a description of the person, and you judge whether the answer needs more "
    "personalisation for this person."
)

JUDGE_USER = """The person:
{persona}

Their question:
{question}

The answer:
{answer}

Would this person want the answer revised to suit them better? Consider how well it is
personalised to them (without quoting their attributes) and how helpful it is. Reply with a
JSON object with exactly these keys: "chain_of_thought" (your reasoning), "personalization_critic",
"helpfulness_critic", "conclusion" (strings) and "needs_revision" (true or false)."""

JUDGE_KEYS: Final = (
    "chain_of_thought",
    "personalization_critic",
    "helpfulness_critic",
    "conclusion",
)

JUDGE_SCHEMA: Final[dict[str, Any]] = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                **{key: {"type": "string"} for key in JUDGE_KEYS},
                "needs_revision": {"type": "boolean"},
            },
            "required": [*JUDGE_KEYS, "needs_revision"],
            "additionalProperties": False,
        },
    },
}


def judge_response_format(kind: str) -> dict[str, Any]:
    """`--judge-format`: the schema itself, or a plain JSON object (the prompt names the keys)."""
    return JUDGE_SCHEMA if kind == "json_schema" else {"type": "json_object"}


def system_prompt(mode: str, persona: str) -> str:
    return _PLAIN_SYSTEM if mode == "baseline" else _PERSONA_SYSTEM.format(persona=persona)


def answer_user(mode: str, question: str, answer_format: str) -> str:
    """The user message: the question, then the reply format of `mode`."""
    fields = PREAMBLE[mode]
    if answer_format == "json":
        keys = ", ".join(f"`{label.lower()}` ({what})" for label, what in fields)
        return question + _JSON_TAIL.format(keys=(keys + " and `answer`") if keys else "`answer`")
    lines = [f"{label}: <{what}>" for label, what in fields]
    lines.append("ANSWER: <your answer>")
    return question + _MARKED_TAIL.format(lines="\n".join(lines))


def answer_schema(mode: str) -> dict[str, Any]:
    """The `response_format` of an answer in `--answer-format json`."""
    keys = [label.lower() for label, _ in PREAMBLE[mode]] + ["answer"]
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {key: {"type": "string"} for key in keys},
                "required": keys,
                "additionalProperties": False,
            },
        },
    }


def _version() -> str:
    digest = hashlib.sha256()
    texts = (_PLAIN_SYSTEM, _PERSONA_SYSTEM, _MARKED_TAIL, _JSON_TAIL, JUDGE_SYSTEM, JUDGE_USER)
    for text in (*texts, repr(PREAMBLE)):
        digest.update(text.encode())
    return digest.hexdigest()[:12]


TEMPLATE_VERSION: Final = _version()
