"""The fast paths of the critique and revision parsers give what their regexes give."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.persona import templates

PIECES = ["EVALUATION:", "SUGGESTIONS:", "DONE", "REVISED PREFERENCE:", " ", "\n", "a", "b c", ":"]
texts = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)


def _by_regex_critique(text: str) -> str | None:
    match = templates._CRITIQUE.search(text)
    if match is None:
        return None
    return f"EVALUATION: {match['evaluation']}\nSUGGESTIONS: {match['suggestions']}"


def _by_regex_revision(text: str) -> str | None:
    match = templates._REVISED.search(text)
    if match is None or not match["text"].strip():
        return None
    return match["text"]


def _or_none(parse: object, text: str) -> str | None:
    assert callable(parse)
    try:
        result = parse(text)
    except templates.MissingMarkers:
        return None
    assert isinstance(result, str)
    return result


@settings(max_examples=3000, deadline=None)
@given(texts)
def test_critique_parse_equals_the_regex(text: str) -> None:
    assert _or_none(templates.parse_critique, text) == _by_regex_critique(text)


@settings(max_examples=3000, deadline=None)
@given(texts)
def test_revision_parse_equals_the_regex(text: str) -> None:
    assert _or_none(templates.parse_revision, text) == _by_regex_revision(text)


def test_the_usual_replies_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    never = re.compile(r"(?!)")  # the regexes can no longer match: only the fast path answers
    monkeypatch.setattr(templates, "_CRITIQUE", never)
    monkeypatch.setattr(templates, "_REVISED", never)
    critique = "EVALUATION: too long.\n SUGGESTIONS:  be brief. \nDONE\n"
    assert templates.parse_critique(critique) == "EVALUATION: too long.\nSUGGESTIONS: be brief."
    revision = "REVISED PREFERENCE:\n Short answer. DONE \n"
    assert templates.parse_revision(revision) == "Short answer."
