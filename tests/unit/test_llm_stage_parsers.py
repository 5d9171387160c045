"""The optional LLM stages' reply parsers and request builders (pure: no network).

End to end runs of the commands are in tests/test_llm_stages.py.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine.llm_stage import UnusableReplyError, encode_requests, reply_text
from engine.persona.paths import DEFAULT_PERSONAS_PATH
from engine.persona.run import load_personas
from engine.persona.stages.controversy import (
    ClassifierConfig,
    UnparseableReplyError,
    Verdict,
    build_classifier_request,
    parse_classifier_reply,
)
from engine.persona.stages.enrichment import (
    ENRICHED_FIELDS,
    THEMES,
    THEMES_PER_FIELD,
    CheckConfig,
    EnrichConfig,
    MalformedReplyError,
    build_check_request,
    build_enrichment_request,
    parse_check_reply,
    parse_enrichment_reply,
    sample_themes,
)
from schemas.openai import ChatMessage, ChatResponse, Choice
from schemas.persona import Persona, make_persona
from schemas.prompt import Prompt
from workers.sim.text import reply_form

FIELDS = ENRICHED_FIELDS


def _messages(body: dict[str, Any]) -> list[ChatMessage]:
    return [ChatMessage(**m) for m in body["messages"]]


def _completion(content: str | None, finish: str = "stop") -> bytes:
    message = ChatMessage(role="assistant", content=content)
    return msgspec.json.encode(
        ChatResponse(id="r", choices=[Choice(index=0, message=message, finish_reason=finish)])
    )


# --- parsers and request builders ----------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("VERDICT: CONTROVERSIAL", Verdict.CONTROVERSIAL),
        ("verdict: not controversial.\n", Verdict.NOT_CONTROVERSIAL),
        ("**Verdict:** NOT_CONTROVERSIAL", Verdict.NOT_CONTROVERSIAL),
        ("CONTROVERSIAL", Verdict.CONTROVERSIAL),
    ],
)
def test_verdict_lines_parse(reply: str, verdict: Verdict) -> None:
    assert parse_classifier_reply(reply) is verdict


@pytest.mark.parametrize(
    "reply",
    [
        "VERDICT:",
        "VERDICT: maybe",
        "VERDICT: CONTROVERSIAL\nREASON: people disagree",
        "The VERDICT: CONTROVERSIAL",
        "VERDICT: CONTROVERSIAL VERDICT: NOT_CONTROVERSIAL",
    ],
)
def test_bad_verdict_lines_raise(reply: str) -> None:
    with pytest.raises(UnparseableReplyError):
        parse_classifier_reply(reply)


def test_classifier_request_carries_the_form_the_simulator_fills() -> None:
    prompt = Prompt(id="c1", topic="unknown", text="Should voting be compulsory?")
    body = build_classifier_request(prompt, ClassifierConfig(model="m"))
    [field] = reply_form(_messages(body))
    assert field.label == "VERDICT"
    assert set(field.options) == {v.value for v in Verdict}


GOOD_ENRICHMENT = (
    "detailed job description: Teaches fifth grade math.\n\n"
    "Personal Time:  Hikes the dunes on weekends: with a thermos.  \n"
    "lifestyle: Early to bed, early to rise."
)


def test_enrichment_reply_parses_to_each_field() -> None:
    assert parse_enrichment_reply(GOOD_ENRICHMENT, FIELDS) == {
        "detailed job description": "Teaches fifth grade math.",
        "personal time": "Hikes the dunes on weekends: with a thermos.",
        "lifestyle": "Early to bed, early to rise.",
    }
    only_two = parse_enrichment_reply("lifestyle: Busy.\npersonal time: Chess.", FIELDS[1:])
    assert list(only_two) == ["personal time", "lifestyle"]


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("personal time: Chess.\nlifestyle: Busy.", "missing 'detailed job description'"),
        (GOOD_ENRICHMENT + "\nincome: $1", "unexpected line 'income'"),
        (GOOD_ENRICHMENT + "\nlifestyle: Again.", "'lifestyle' given twice"),
        (GOOD_ENRICHMENT.replace("Early to bed, early to rise.", " "), "'lifestyle' is empty"),
        ("Sure! Here you go:\n" + GOOD_ENRICHMENT, "unexpected line 'sure! here you go'"),
        (GOOD_ENRICHMENT + "\nHope this helps", "a line without a label"),
        ("- " + GOOD_ENRICHMENT, "unexpected line '- detailed job description'"),
        ("", "missing"),
    ],
)
def test_bad_enrichment_replies_raise(reply: str, problem: str) -> None:
    with pytest.raises(MalformedReplyError) as caught:
        parse_enrichment_reply(reply, FIELDS)
    assert caught.value.problem.startswith(problem)
    assert caught.value.reply == reply


@pytest.mark.parametrize(
    ("reply", "plausible", "reason"),
    [
        ("PLAUSIBLE: YES\nREASON: Nothing contradicts.", True, "Nothing contradicts."),
        ("plausible: no.\n\nReason: A 4-year-old with a PhD.", False, "A 4-year-old with a PhD."),
        ("PLAUSIBLE: **No**\nREASON: x: y", False, "x: y"),
    ],
)
def test_check_replies_parse(reply: str, plausible: bool, reason: str) -> None:
    verdict = parse_check_reply(reply)
    assert (verdict.plausible, verdict.reason) == (plausible, reason)


@pytest.mark.parametrize(
    "reply",
    [
        "PLAUSIBLE: YES",
        "REASON: fine\nPLAUSIBLE: YES",
        "PLAUSIBLE: MAYBE\nREASON: unsure",
        "PLAUSIBLE: YES\nREASON:",
        "PLAUSIBLE: YES\nREASON: fine\nNOTE: more",
        "Yes, plausible.",
    ],
)
def test_bad_check_replies_raise(reply: str) -> None:
    with pytest.raises(MalformedReplyError):
        parse_check_reply(reply)


def test_reply_text_refuses_unusable_bodies() -> None:
    assert reply_text(_completion("VERDICT: CONTROVERSIAL")) == "VERDICT: CONTROVERSIAL"
    problems = []
    for body in (
        _completion("lifestyle: cut off in the mid", finish="length"),
        _completion(None),
        _completion(""),
        msgspec.json.encode(ChatResponse(id="r", choices=[])),
        b"<html>502</html>",
    ):
        with pytest.raises(UnusableReplyError) as caught:
            reply_text(body)
        problems.append(caught.value.problem)
    assert len(set(problems)) == 4  # empty and None content share one problem


def _persona(persona_id: str = "p1", drop: tuple[str, ...] = ()) -> Persona:
    base = load_personas(DEFAULT_PERSONAS_PATH)[0]
    attributes = {k: v for k, v in base.attributes.items() if k not in drop}
    return make_persona(persona_id, attributes)


def test_themes_are_drawn_per_seed_persona_and_field() -> None:
    drawn = {
        (seed, pid): sample_themes(seed, pid, "personal time")
        for seed in range(3)
        for pid in ("p0000", "p0001", "p0002")
    }
    assert sample_themes(0, "p0000", "personal time") == drawn[0, "p0000"]
    for themes in drawn.values():
        assert len(themes) == THEMES_PER_FIELD
        assert set(themes) <= set(THEMES["personal time"])
    assert len(set(drawn.values())) > 3


def test_enrichment_request_depends_on_the_persona_and_seed_only() -> None:
    config = EnrichConfig(model="m")
    body = build_enrichment_request(_persona(), config, seed=7)
    assert body is not None
    assert body == build_enrichment_request(_persona(), config, seed=7)
    assert encode_requests({"p1": body}) == encode_requests({"p1": dict(reversed(body.items()))})
    assert body != build_enrichment_request(_persona(), config, seed=8)
    assert body["seed"] == 7
    assert [f.label for f in reply_form(_messages(body))] == list(FIELDS)
    assert _persona().text in body["messages"][1]["content"]
    partial = build_enrichment_request(_persona(drop=FIELDS[:1]), config, seed=7)
    assert partial is not None
    assert [f.label for f in reply_form(_messages(partial))] == list(FIELDS[1:])
    assert build_enrichment_request(_persona(drop=FIELDS), config, seed=7) is None


def test_check_request_carries_its_form() -> None:
    body = build_check_request(_persona(), CheckConfig(model="judge"), seed=1)
    form = reply_form(_messages(body))
    assert [(f.label, f.options) for f in form] == [("PLAUSIBLE", ("YES", "NO")), ("REASON", ())]
    assert (body["model"], body["temperature"]) == ("judge", 0.0)
