"""`study serve` as a real subprocess on 127.0.0.1, spoken to over HTTP: the token rules, the
escaping of every model text, concurrent raters, a SIGKILL mid-study, the size limits."""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import json
import re
from pathlib import Path

import pytest

from tests.study_support import (
    create_study,
    export,
    http,
    links,
    organiser_path,
    serving,
    write_pairs,
)

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
PAYLOAD = f"{SCRIPT}{ATTRIBUTE}"
FIELDS = ("persona_id", "persona", "prompt_id", "prompt", "rejected", "chosen")


def _study(tmp_path: Path, personas: int = 2, questions: int = 3, raters: int = 2) -> Path:
    write_pairs(tmp_path / "run", personas, questions)
    return create_study(
        tmp_path / "run", tmp_path / "study", personas=personas, questions=questions, raters=raters
    )


def test_a_token_opens_its_own_seat_and_nothing_else(tmp_path: Path) -> None:
    study = _study(tmp_path)
    other = create_study(tmp_path / "run", tmp_path / "other", personas=2, questions=3)
    seats = links(study)
    assert len({s["path"] for s in seats}) == len(seats) == 4
    assert all(re.fullmatch(r"/r/[A-Za-z0-9_-]{32}", s["path"]) for s in seats)
    organiser = organiser_path(study)
    with serving(study) as server:
        assert "loopback only" in server.lines[0]
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.lines[1].strip() == f"organiser page: {server.base_url}{organiser}"
        first, second = seats[0], seats[-1]  # two personas
        mine = server.get(first["path"])
        assert mine.status == 200
        theirs = server.get(second["path"]).text
        persona_of = {s["path"]: s["persona_id"] for s in seats}
        assert f"persona {persona_of[first['path']][1:]}?" in mine.text
        assert f"persona {persona_of[first['path']][1:]}?" not in theirs

        token = first["path"].removeprefix("/r/")
        refused = [
            "/r/" + "x" * 32,  # unknown
            "/r/" + token[:-1],  # one character short
            "/r/" + token.upper() if token.upper() != token else "/r/" + token.lower(),
            organiser.replace("/o/", "/r/"),  # the organiser's token on a rater's path
            first["path"].replace("/r/", "/o/"),  # a rater's token on the organiser's path
            links(other)[0]["path"],  # a token of another study
            organiser_path(other),
            first["path"] + "?item=0",
            first["path"] + "?item=4",  # the seat has 3 items
            first["path"] + "?item=x",
            organiser + "/secrets.jsonl",
            "/",
        ]
        for path in refused:
            reply = server.get(path)
            assert reply.status == 404, path
            assert "Question" not in reply.text, path
        # posting: an unknown token, an item outside the seat, another study's token
        for path, number in ((links(other)[0]["path"], 1), (first["path"], 4),
                             (first["path"], 0), ("/r/" + "y" * 32, 1)):  # fmt: skip
            assert server.answer(path, number, "A", "because").status == 404
        assert server.get(organiser).status == 200
        assert server.get(first["path"]).headers["Referrer-Policy"] == "no-referrer"
    _, _, raters = export(study)
    assert raters == []  # nothing refused was stored


def test_model_text_is_escaped_everywhere_it_is_shown(tmp_path: Path) -> None:
    text = {field: PAYLOAD for field in FIELDS}
    write_pairs(tmp_path / "run", 1, 2, text)
    study = create_study(tmp_path / "run", tmp_path / "study", personas=1, questions=2, raters=1)
    seat = links(study)[0]["path"]
    organiser = organiser_path(study)
    (study / "instructions.md").write_text(f"Read this.\n\n{PAYLOAD}\n")
    with serving(study) as server:
        pages = [server.get(seat).text]
        first = server.answer(seat, 1, "A", PAYLOAD)
        assert first.status == 303
        pages += [server.get(seat).text, server.get(seat + "?item=1").text]
        assert server.answer(seat, 2, "B", "").status == 422  # re-rendered with an error
        pages.append(server.answer(seat, 2, "nonsense", PAYLOAD).text)
        assert server.answer(seat, 2, "cant_tell", PAYLOAD).status == 303
        pages += [server.get(seat).text, server.get(organiser).text]
        exported = server.get(organiser + "/human.raters.jsonl")
    assert exported.headers["Content-Type"].startswith("application/jsonl")
    for page in pages:
        for raw in ("<script>alert", "<img", "alert(1)>"):
            assert raw not in page
    shown = "\n".join(pages)
    assert shown.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in shown
    assert pages[2].count("&lt;script&gt;") >= 7  # instructions, persona, question, A, B, …
    # the item's persona id and prompt id reach the export untouched (JSON, not HTML)
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert {r["id"] for r in rows} == {f"{PAYLOAD}0:{PAYLOAD}{q}" for q in range(2)}
    assert {r["justification"] for r in rows} == {PAYLOAD}


def test_concurrent_raters_each_answer_stored_once(tmp_path: Path) -> None:
    questions = 5
    study = _study(tmp_path, personas=3, questions=questions, raters=3)
    seats = links(study)
    posts = [
        (seat["path"], number, choice, f"{seat['seat']} says {number} ({round_})")
        for seat in seats
        for number in range(1, questions + 1)
        for round_, choice in enumerate(("A", "B")[: 1 + (number == 2)])  # item 2: twice
    ]
    with serving(study) as server:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(lambda p: server.answer(*p).status, posts))
        assert statuses == [303] * len(posts)
        page = server.get(organiser_path(study)).text
    assert f"{len(seats)}</strong> of {len(seats)} raters finished" in page
    _, _, raters = export(study)
    assert len(raters) == len(seats) * questions
    assert len({(r["rater"], r["id"]) for r in raters}) == len(raters)
    by_seat = collections.Counter(r["rater"] for r in raters)
    assert set(by_seat.values()) == {questions}
    twice = [r for r in raters if r["number"] == 2]
    assert [r["submits"] for r in twice] == [2] * len(seats)
    # the stored answer is one of the two submitted, whole (never a mix of both)
    for r in twice:
        assert (r["preferred"], r["justification"][-3:]) in {("A", "(0)"), ("B", "(1)")}


def test_server_killed_mid_study_loses_nothing(tmp_path: Path) -> None:
    questions = 4
    study = _study(tmp_path, personas=2, questions=questions, raters=2)
    seats = links(study)
    plan = list(itertools.product(seats, range(1, questions + 1)))
    half = len(plan) // 2
    with serving(study) as server:
        for seat, number in plan[:half]:
            reply = server.answer(seat["path"], number, "AB"[number % 2], f"first {number}")
            assert reply.status == 303  # committed before the redirect is sent
        server.process.kill()  # SIGKILL: no shutdown, no flush
        server.process.wait(timeout=30)
    _, _, raters = export(study)
    assert len(raters) == half
    with serving(study) as server:
        resumed = server.get(plan[half][0]["path"])  # the seat resumes at its first unanswered
        answered = sum(1 for seat, _ in plan[:half] if seat is plan[half][0])
        assert f"{answered} of {questions} answered" in resumed.text
        for seat, number in plan[half:]:
            assert server.answer(seat["path"], number, "B", f"second {number}").status == 303
    majority, unresolved, raters = export(study)
    assert len(raters) == len(plan)
    assert len({(r["rater"], r["id"]) for r in raters}) == len(plan)
    assert len(majority) + len(unresolved) == 2 * questions


def test_bodies_are_limited_and_answers_validated(tmp_path: Path) -> None:
    study = _study(tmp_path, personas=1, questions=2, raters=1)
    seat = links(study)[0]["path"]
    with serving(study) as server:
        url = f"{server.base_url}{seat}/1"
        too_big = b"choice=A&justification=" + b"x" * (128 * 1024)
        assert http(url, raw=too_big).status == 413
        long = server.answer(seat, 1, "A", "y" * 2001)
        assert long.status == 422
        assert "under 2000 characters" in long.text
        missing = server.answer(seat, 1, "A", "   ")
        assert (missing.status, "Say why" in missing.text) == (422, True)
        no_choice = http(url, {"justification": "kept"})
        assert no_choice.status == 422
        assert ">kept</textarea>" in no_choice.text  # what was typed is not lost
        assert server.get(seat).text.count("0 of 2 answered") == 1
    assert export(study)[2] == []


@pytest.mark.parametrize("answer_first", [False, True])
def test_instructions_are_editable_until_the_first_answer(
    tmp_path: Path, answer_first: bool
) -> None:
    study = _study(tmp_path, personas=1, questions=2, raters=1)
    seat = links(study)[0]["path"]
    with serving(study) as server:
        (study / "instructions.md").write_text("Version one.\n")
        assert "Version one." in server.get(seat).text
        if answer_first:
            assert server.answer(seat, 1, "A", "why not").status == 303
        (study / "instructions.md").write_text("Version two.\n")
        page = server.get(seat + "?item=2").text
        organiser = server.get(organiser_path(study)).text
    if answer_first:
        assert "Version one." in page
        assert "was changed after the first answer" in organiser
    else:
        assert "Version two." in page
        assert "Not started" in organiser
