"""The optional LLM stages, `prompts-classify` and `personas-enrich`, end to end as a user runs
them: engine subprocesses against the simulator, or against a scripted server on 127.0.0.1.

Their parsers and request builders are tested in tests/test_llm_stage_parsers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
from aiohttp import web

from engine.persona.paths import DEFAULT_PERSONAS_PATH
from engine.persona.prompts import load_prompts
from engine.persona.run import load_personas
from engine.persona.stages.enrichment import ENRICH_SYSTEM, ENRICHED_FIELDS, parse_enrichment_reply
from schemas.persona import Persona, make_persona, persona_decoder, render_text
from tests.helpers import ROOT, engine_cmd, engine_env, read_jsonl, run_engine, serving, simulator

FIELDS = ENRICHED_FIELDS


# --- prompts-classify end to end -------------------------------------------------------------

QUESTIONS = [
    "Should the death penalty be abolished in every country?",
    "Is it fair for rich countries to close their borders to refugees?",
    "How should parents talk to their kids about religion and faith?",
    "Do you think eating meat is morally wrong in this day and age?",
    "What is the best way to reduce homelessness in a big city?",
    "Should schools teach children about climate change activism?",
    "Is it ever acceptable to break the law to protest an injustice?",
    "How much should the government spend on the military each year?",
    "Should social media companies censor misinformation about vaccines?",
    "Is it wrong to have children given the state of the world?",
    "What do you think about euthanasia for people with terminal illness?",
    "Should college education be free for every student in America?",
    "Is monogamy natural for human beings or a social construct?",
    "Should the voting age be lowered to sixteen years old?",
    "What do you think of gun control laws in the United States?",
    "Is it okay to lie to a friend to spare their feelings?",
    "Should wealthy people pay a much higher rate of income tax?",
    "How should we balance privacy and security in surveillance laws?",
    "Can you help me write an email to my landlord",  # no '?'
    "Tell me a joke about cats",  # no '?'
    "Hello there",  # no '?'
    "I need a recipe for banana bread",  # no '?'
    "Why?",  # too few words
    "Is abortion wrong?",  # too few words
    "What about taxes?",  # too few words
    "Should the death penalty be abolished in every country?",  # duplicate
    "should the death  penalty be abolished in every country?",  # duplicate (normalised)
    "Is it okay to lie to a friend to spare their feelings?",  # duplicate
    "",  # empty: no '?'
    "Are zoos ethical places for wild animals to live in?",
]


def _conversations(path: Path) -> Path:
    lines = [
        {"conversation_id": f"c{n:02d}", "opening_prompt": f" {text} ", "conversation_type": "x"}
        for n, text in enumerate(QUESTIONS)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _classify(conversations: Path, out: Path, run_dir: Path, *extra: str) -> Any:
    return run_engine(
        "prompts-classify",
        *("--conversations", str(conversations), "--out", str(out), "--run-dir", str(run_dir)),
        *extra,
    )


def test_prompts_classify_end_to_end(tmp_path: Path) -> None:
    conversations = _conversations(tmp_path / "conversations.jsonl")
    out, run_dir = tmp_path / "prompts.jsonl", tmp_path / "run"
    with simulator() as sim:
        url = ("--base-url", sim.base_url, "--concurrency", "8")
        first = _classify(conversations, out, run_dir, *url)
        assert first.returncode == 0, first.stderr
        served = sim.stats()["completions_served"]
        assert served == 19
        again = _classify(conversations, out, run_dir, *url)
        assert again.returncode == 0, again.stderr
        assert sim.stats()["completions_served"] == served  # the rerun made no call
        other = _classify(conversations, tmp_path / "b.jsonl", tmp_path / "b", *url, "--no-cache")
        assert other.returncode == 0, other.stderr
        assert sim.stats()["completions_served"] == 2 * served  # asked again, same answers
        pairs = run_engine(
            *("generate", "--prompts-file", str(out), "--personas", "2"),
            *("--prompts-per-persona", "4", "--run-dir", str(tmp_path / "pairs"), *url),
        )
    report = json.loads((run_dir / "classify.report.json").read_text())
    dropped = {"no_question_mark": 5, "too_few_words": 3, "duplicate_text": 3}
    assert (report["input"], report["dropped"], report["failed"]) == (30, dropped, [])
    assert report["classified"] == 19
    assert "5 no_question_mark, 3 too_few_words, 3 duplicate_text" in first.stdout
    kept = load_prompts(out)
    assert len(kept) == report["kept"]
    assert 0 < len(kept) < 19
    assert report["not_controversial"] == 19 - len(kept)
    verdicts = {
        line["custom_id"]: line["response"]["body"]["choices"][0]["message"]["content"]
        for line in read_jsonl(run_dir / "results.jsonl")
    }
    assert sorted(p.id for p in kept) == sorted(
        k for k, v in verdicts.items() if v == "VERDICT: CONTROVERSIAL"
    )
    assert {p.topic for p in kept} == {"unknown"}
    assert [p.id for p in kept] == sorted(p.id for p in kept)  # input order
    assert all(p.text == QUESTIONS[int(p.id[1:])] for p in kept)  # stripped, else unchanged
    assert (run_dir / "classify.requests.jsonl").read_bytes() == (
        tmp_path / "b" / "classify.requests.jsonl"
    ).read_bytes()
    assert (tmp_path / "b.jsonl").read_bytes() == out.read_bytes()
    assert again.stdout.count("run already complete") == 1
    assert pairs.returncode == 0, pairs.stderr
    assert pq.read_table(tmp_path / "pairs" / "pairs.parquet").num_rows == 8


# --- a scripted API for the failure paths ----------------------------------------------------


@contextlib.asynccontextmanager
async def scripted_api(reply_for: Callable[[dict[str, Any]], str]) -> AsyncIterator[str]:
    """A chat-completions server on 127.0.0.1 answering each request with `reply_for(body)`."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        choice = {"index": 0, "message": {"role": "assistant", "content": reply_for(body)}}
        return web.json_response(
            {"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice], "usage": {}}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    async with serving(app) as url:
        yield url


async def _engine(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *engine_cmd(*args),
        cwd=ROOT,
        env=engine_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, output.decode()


def _user(body: dict[str, Any]) -> str:
    content: str = body["messages"][-1]["content"]
    return content


async def test_classify_reports_unparseable_replies_by_id(tmp_path: Path) -> None:
    def reply(body: dict[str, Any]) -> str:
        question = _user(body)
        if "death" in question or "zoos" in question:
            return "VERDICT: CONTROVERSIAL"
        return "VERDICT: NOT_CONTROVERSIAL" if "homelessness" in question else "It depends."

    conversations = _conversations(tmp_path / "conversations.jsonl")
    out, run_dir = tmp_path / "prompts.jsonl", tmp_path / "run"
    args = ("--conversations", str(conversations), "--out", str(out), "--run-dir", str(run_dir))
    async with scripted_api(reply) as url:
        code, output = await _engine("prompts-classify", *args, "--base-url", url)
    assert code == 3, output
    assert [p.id for p in load_prompts(out)] == ["c00", "c29"]
    report = json.loads((run_dir / "classify.report.json").read_text())
    failed = {f["id"] for f in report["failed"]}
    assert len(failed) == 16
    assert failed.isdisjoint({"c00", "c04", "c29"})
    assert (report["classified"], report["kept"], report["not_controversial"]) == (3, 2, 1)
    assert "failed c01: classifier reply is not a verdict: 'It depends.'" in output


# --- personas-enrich end to end --------------------------------------------------------------


def _personas(path: Path, n: int = 10) -> list[Persona]:
    """The first n shipped personas; the last one without any of the fields to enrich."""
    personas = load_personas(DEFAULT_PERSONAS_PATH)[:n]
    last = personas[-1]
    bare = {k: v for k, v in last.attributes.items() if k not in FIELDS}
    personas[-1] = make_persona(last.id, bare)
    path.write_bytes(b"".join(msgspec.json.encode(p) + b"\n" for p in personas))
    return personas


def _read_personas(path: Path) -> list[Persona]:
    return [persona_decoder.decode(line) for line in path.read_bytes().splitlines()]


def _enrich(source: Path, out: Path, run_dir: Path, *extra: str) -> Any:
    return run_engine(
        *("personas-enrich", "--in", str(source), "--out", str(out), "--run-dir", str(run_dir)),
        *extra,
    )


def _assert_enriched(inputs: list[Persona], written: list[Persona], run_dir: Path) -> None:
    """Only the open-ended fields changed, to what the enrichment replies said."""
    replies = {
        line["custom_id"]: line["response"]["body"]["choices"][0]["message"]["content"]
        for line in read_jsonl(run_dir / "enrich" / "results.jsonl")
    }
    by_id = {p.id: p for p in inputs}
    for persona in written:
        before = by_id[persona.id]
        assert persona.text == render_text(persona.attributes)
        assert persona.attributes.keys() == before.attributes.keys()
        fields = tuple(f for f in FIELDS if f in before.attributes)
        for name, value in persona.attributes.items():
            assert (value != before.attributes[name]) == (name in fields), name
        if fields:
            assert parse_enrichment_reply(replies[persona.id], fields) == {
                f: persona.attributes[f] for f in fields
            }


def test_personas_enrich_end_to_end(tmp_path: Path) -> None:
    source = tmp_path / "personas.jsonl"
    inputs = _personas(source)
    out, run_dir = tmp_path / "enriched.jsonl", tmp_path / "run"
    with simulator() as sim:
        url = ("--base-url", sim.base_url, "--concurrency", "8", "--seed", "3")
        first = _enrich(source, out, run_dir, *url)
        assert first.returncode == 0, first.stdout + first.stderr
        served = sim.stats()["completions_served"]
        assert served == 9 + 10  # one persona has nothing to enrich; all ten are checked
        again = _enrich(source, out, run_dir, *url)
        assert again.returncode == 0, again.stderr
        assert sim.stats()["completions_served"] == served
        more = ("--no-cache", "--drop-implausible")
        dropping = _enrich(source, tmp_path / "dropped.jsonl", tmp_path / "b", *url, *more)
        assert dropping.returncode == 0, dropping.stderr
        assert sim.stats()["completions_served"] == 2 * served
    report = json.loads((run_dir / "enrich.report.json").read_text())
    checks = {
        line["custom_id"]: line["response"]["body"]["choices"][0]["message"]["content"]
        for line in read_jsonl(run_dir / "check" / "results.jsonl")
    }
    implausible = sorted(k for k, v in checks.items() if v.startswith("PLAUSIBLE: NO\n"))
    assert 0 < len(implausible) < 10
    assert [item["id"] for item in report["implausible"]] == implausible
    assert (report["input"], report["enriched"], report["unchanged"]) == (10, 9, 1)
    assert (report["checked"], report["plausible"]) == (10, 10 - len(implausible))
    assert (report["failed"], report["dropped"], report["written"]) == ([], [], 10)
    written = _read_personas(out)
    assert [p.id for p in written] == [p.id for p in inputs]
    assert written[-1] == inputs[-1]
    _assert_enriched(inputs, written, run_dir)
    kept = _read_personas(tmp_path / "dropped.jsonl")
    assert kept == [p for p in written if p.id not in implausible]
    dropped_report = json.loads((tmp_path / "b" / "enrich.report.json").read_text())
    assert dropped_report["dropped"] == implausible
    for run in ("enrich", "check"):
        name = f"{run}/{run}.requests.jsonl"
        assert (run_dir / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert f"implausible {implausible[0]}: " in first.stdout
    assert again.stdout.count("run already complete") == 2


async def test_enrich_reports_failures_by_persona_id(tmp_path: Path) -> None:
    full = [p for p in load_personas(DEFAULT_PERSONAS_PATH) if set(FIELDS) <= p.attributes.keys()]
    personas = full[:3]
    source = tmp_path / "personas.jsonl"
    source.write_bytes(b"".join(msgspec.json.encode(p) + b"\n" for p in personas))
    ages = {p.attributes["age"]: p.id for p in personas}
    good = "detailed job description: Fixes things.\npersonal time: Fishing.\nlifestyle: Calm."

    def reply(body: dict[str, Any]) -> str:
        persona_id = ages[_user(body).split("<<<\nage: ", 1)[1].split("\n", 1)[0]]
        if body["messages"][0]["content"] == ENRICH_SYSTEM:
            return good.replace("\nlifestyle: Calm.", "") if persona_id == ids[1] else good
        answer = "perhaps" if persona_id == ids[2] else "YES"
        return f"PLAUSIBLE: {answer}\nREASON: Consistent."

    ids = [p.id for p in personas]
    out, run_dir = tmp_path / "enriched.jsonl", tmp_path / "run"
    args = ("--in", str(source), "--out", str(out), "--run-dir", str(run_dir))
    async with scripted_api(reply) as url:
        code, output = await _engine("personas-enrich", *args, "--base-url", url)
    assert code == 3, output
    [written] = _read_personas(out)
    assert written.id == ids[0]
    assert written.attributes["personal time"] == "Fishing."
    report = json.loads((run_dir / "enrich.report.json").read_text())
    assert [(f["id"], f["stage"]) for f in report["failed"]] == [
        (ids[1], "enrich"),
        (ids[2], "check"),
    ]
    assert report["dropped"] == ids[1:]
    assert f"failed (enrich) {ids[1]}: missing 'lifestyle'" in output
    assert f"failed (check) {ids[2]}: PLAUSIBLE is neither YES nor NO" in output
