"""The three Direct Principle Feedback prompts, in one place.

Our own wording of the paper's intent (PERSONA.md section 3; the paper's exact prompts are
not all published): answer with no persona → critique as the persona → revise subtly.
Changing any text here changes the requests' fingerprints, so the cache recomputes exactly
the stage whose template changed.
"""

from __future__ import annotations

import re

ANSWER_SYSTEM = "You are a helpful, honest assistant. Answer the user's question directly."

CRITIQUE_SYSTEM = (
    "You role-play one specific person, described below, reading an assistant's answer to a "
    "question they asked. Judge the answer from that person's point of view."
)

CRITIQUE_USER = """The person:
{persona}

Their question:
{question}

The answer they received:
{answer}

Assume this person prefers short answers. In two parts, say how the answer does and does not
resonate with them, pointing to specific parts of the answer and to the aspects of the person
that make them react that way, and staying relevant to the question. Then suggest concrete
changes that would make the answer suit them better.

Write exactly:
EVALUATION: <your evaluation>
SUGGESTIONS: <your suggestions>
DONE"""

REVISE_SYSTEM = "You improve answers following a reader's critique."

REVISE_USER = """Question:
{question}

Original answer:
{answer}

A reader's critique of it:
{critique}

Rewrite the answer following the critique. Keep the changes subtle and indirect: never
mention the reader or any of their traits, and never say the answer was revised. Use fewer
words than the original answer.

Write exactly:
REVISED PREFERENCE: <the revised answer>
DONE"""

_CRITIQUE = re.compile(
    r"EVALUATION:\s*(?P<evaluation>.+?)\s*SUGGESTIONS:\s*(?P<suggestions>.+?)\s*DONE", re.S
)
_REVISED = re.compile(r"REVISED PREFERENCE:\s*(?P<text>.+?)\s*DONE\s*$", re.S)


class MissingMarkers(ValueError):
    """A critique or revision that does not follow its output format."""


def parse_critique(text: str) -> str:
    """`EVALUATION: … SUGGESTIONS: …` (without DONE), or MissingMarkers."""
    # What `_CRITIQUE` finds, by `str.find` when each part is non-empty (the lazy groups cost
    # ~8 µs a call on a 500-character reply, three calls per pair); the regex otherwise.
    i = text.find("EVALUATION:")
    j = text.find("SUGGESTIONS:", i + 11) if i >= 0 else -1
    k = text.find("DONE", j + 12) if j >= 0 else -1
    if k >= 0:
        evaluation, suggestions = text[i + 11 : j].strip(), text[j + 12 : k].strip()
        if evaluation and suggestions:
            return f"EVALUATION: {evaluation}\nSUGGESTIONS: {suggestions}"
    match = _CRITIQUE.search(text)
    if match is None:
        raise MissingMarkers("critique lacks EVALUATION: … SUGGESTIONS: … DONE")
    return f"EVALUATION: {match['evaluation']}\nSUGGESTIONS: {match['suggestions']}"


def parse_revision(text: str) -> str:
    """The revised answer between `REVISED PREFERENCE:` and the final `DONE`."""
    i = text.find("REVISED PREFERENCE:")  # as parse_critique: `_REVISED` without the regex
    end = text.rstrip()
    if i >= 0 and end.endswith("DONE") and (found := end[i + 19 : -4].strip()):
        return found
    match = _REVISED.search(text)
    if match is None or not match["text"].strip():
        raise MissingMarkers("revision lacks REVISED PREFERENCE: … DONE")
    return match["text"]
