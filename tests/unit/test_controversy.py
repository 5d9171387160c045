"""The controversy classifier's request body and reply parser (no network: pure data)."""

from __future__ import annotations

import msgspec
import pytest

from engine.persona.stages.controversy import (
    SYSTEM_PROMPT,
    ClassifierConfig,
    UnparseableReplyError,
    Verdict,
    build_classifier_request,
    parse_classifier_reply,
    parse_classifier_response,
)
from schemas.openai import ChatMessage, ChatResponse, Choice, chat_request_decoder
from schemas.prompt import Prompt

PROMPT = Prompt(id="q0042", topic="guns", text="Should {teachers} carry guns in school?")


def test_request_is_a_valid_chat_body_carrying_the_question() -> None:
    body = build_classifier_request(PROMPT, ClassifierConfig(model="judge-1", max_tokens=8))
    request = chat_request_decoder.decode(msgspec.json.encode(body))
    assert request.model == "judge-1"
    assert (request.temperature, request.max_tokens) == (0.0, 8)
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[0].content == SYSTEM_PROMPT
    user = request.messages[1].content
    assert user is not None
    assert "<<<\nShould {teachers} carry guns in school?\n>>>" in user
    for label in Verdict:
        assert label.value in SYSTEM_PROMPT


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"model": "m", "temprature": 0.5}, ClassifierConfig)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("CONTROVERSIAL", Verdict.CONTROVERSIAL),
        ("  controversial.\n", Verdict.CONTROVERSIAL),
        ("NOT_CONTROVERSIAL", Verdict.NOT_CONTROVERSIAL),
        ("Not controversial", Verdict.NOT_CONTROVERSIAL),
        ("**not-controversial**", Verdict.NOT_CONTROVERSIAL),
        ("`CONTROVERSIAL`", Verdict.CONTROVERSIAL),
        ('"NOT_CONTROVERSIAL"', Verdict.NOT_CONTROVERSIAL),
        ('{"label": "controversial"}', Verdict.CONTROVERSIAL),
        ('{"label": "NOT_CONTROVERSIAL", "reason": "factual"}', Verdict.NOT_CONTROVERSIAL),
    ],
)
def test_replies_parse(reply: str, verdict: Verdict) -> None:
    assert parse_classifier_reply(reply) is verdict


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "Yes",
        "CONTROVERSIAL because people disagree",
        "CONTROVERSIAL or NOT_CONTROVERSIAL",
        "NOT",
        '{"label": 1}',
        '{"verdict": "CONTROVERSIAL"}',
        "{not json",
        '["CONTROVERSIAL"]',
    ],
)
def test_unparseable_replies_raise_with_the_reply(reply: str) -> None:
    with pytest.raises(UnparseableReplyError) as caught:
        parse_classifier_reply(reply)
    assert caught.value.reply == reply


def _response(content: str | None) -> bytes:
    choice = Choice(index=0, message=ChatMessage(role="assistant", content=content))
    return msgspec.json.encode(ChatResponse(id="r1", choices=[choice]))


def test_response_bodies_parse() -> None:
    assert parse_classifier_response(_response("NOT_CONTROVERSIAL")) is Verdict.NOT_CONTROVERSIAL
    with pytest.raises(UnparseableReplyError):
        parse_classifier_response(_response(None))
    with pytest.raises(UnparseableReplyError):
        parse_classifier_response(msgspec.json.encode(ChatResponse(id="r2", choices=[])))
    with pytest.raises(UnparseableReplyError) as garbage:
        parse_classifier_response(b"<html>bad gateway</html>")
    assert "bad gateway" in garbage.value.reply
