"""The study's pure parts: drawing items and seats, majority labels, Fleiss' kappa."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import pytest

from engine.errors import SettingsError
from engine.evaluation.verify import Item, SourcePair
from engine.study import cli, design, store, tally, web

# Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 items, 14 raters each,
# 5 categories; kappa 0.210 (P-bar 0.378, P-bar-e 0.213)
FLEISS_EXAMPLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip


def pairs(personas: int, questions: int) -> list[SourcePair]:
    return [
        SourcePair(
            f"p{p}", f"persona {p}", f"q{q}", f"question {q}", f"orig {p}.{q}", f"rev {p}.{q}"
        )
        for p in range(personas)
        for q in range(questions)
    ]


def test_fleiss_kappa_matches_the_worked_example() -> None:
    counts = np.asarray(FLEISS_EXAMPLE, dtype=np.float64)
    assert float(tally.fleiss(counts)) == pytest.approx(0.2099, abs=1e-4)
    # resamples along a leading axis give each resample's kappa
    resample = counts[[0, 0, 1, 2, 3, 4, 5, 6, 9, 9]]
    stacked = tally.fleiss(np.stack([counts, resample]))
    assert stacked[0] == pytest.approx(0.2099, abs=1e-4)
    assert stacked[1] == pytest.approx(float(tally.fleiss(resample)))
    assert stacked[1] != pytest.approx(stacked[0])


def test_fleiss_kappa_interval_and_degenerate_cases() -> None:
    votes = [tally.Votes(revision=3), tally.Votes(original=2, revision=1),
             tally.Votes(revision=2, cant_tell=1), tally.Votes(original=3),
             tally.Votes(revision=1)]  # fmt: skip
    result = tally.fleiss_kappa(votes, seed=1)
    assert result is not None
    assert result.items == 4  # the item with one answer carries no agreement
    assert result.answers == 12
    assert result.low <= result.kappa <= result.high
    assert tally.fleiss_kappa(votes, seed=1) == result  # seeded
    unanimous = tally.fleiss_kappa([tally.Votes(revision=2)] * 3)
    assert unanimous is not None
    assert (unanimous.kappa, unanimous.low, unanimous.high) == (1.0, 1.0, 1.0)
    assert tally.fleiss_kappa([tally.Votes(revision=1)]) is None


def test_draw_items_is_seeded_and_records_the_order() -> None:
    source = pairs(5, 6) + pairs(1, 2)  # a repeated pair is drawn once
    first = design.draw_items(source, 3, 4, seed=7)
    assert first == design.draw_items(source, 3, 4, seed=7)
    assert first != design.draw_items(source, 3, 4, seed=8)
    assert len(first) == 3
    positions: collections.Counter[str] = collections.Counter()
    for persona_id, items in first.items():
        assert len(items) == len({i.id for i in items}) == 4
        for item in items:
            assert item.id.startswith(f"{persona_id}:q")
            revision, original = (
                (item.a, item.b) if item.revision_position == "A" else (item.b, item.a)
            )
            assert revision.startswith("rev ")
            assert original.startswith("orig ")
            positions[item.revision_position] += 1
    assert set(positions) == {"A", "B"}
    with pytest.raises(SettingsError, match="--personas 6 --questions 4: the run has only 5"):
        design.draw_items(source, 6, 4, seed=0)


def test_seats_have_distinct_unguessable_tokens() -> None:
    seats = design.make_seats(["p1", "p2", "p3"], 4)
    assert [s.seat_id for s in seats][:5] == ["r001", "r002", "r003", "r004", "r005"]
    assert collections.Counter(s.persona_id for s in seats) == {"p1": 4, "p2": 4, "p3": 4}
    tokens = [s.token for s in seats] + [s.token for s in design.make_seats(["p1"], 50)]
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) == 32 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


def _study(votes: dict[str, list[store.Choice]]) -> tuple[store.Study, list[store.Answer]]:
    """One persona; item i's revision is at A when i is even; `votes` by item id."""
    ids = list(votes)
    items = [Item(i, "who", "q", "A" if n % 2 == 0 else "B", "a", "b") for n, i in enumerate(ids)]
    raters = max(len(v) for v in votes.values())
    seats = [store.Seat(f"r{k}", "p", f"t{k}") for k in range(raters)]
    answers = [
        store.Answer(f"r{k}", n, choice, "why", "2026-01-01T00:00:00+00:00")
        for n, item_id in enumerate(ids)
        for k, choice in enumerate(votes[item_id])
    ]
    settings = store.Settings(
        source="run",
        pairs_digest="d",
        seed=0,
        personas=1,
        questions=len(ids),
        raters_per_persona=raters,
        created_at="now",
    )
    return store.Study(settings, "org", seats, {"p": items}), answers


def test_tally_reports_majorities_ties_and_cant_tell() -> None:
    study, answers = _study(
        {
            "p:0": ["A", "A", "A"],  # revision at A: unanimous revision
            "p:1": ["A", "A", "B"],  # revision at B: original by 2 to 1
            "p:2": ["A", "B", "cant_tell"],  # a tie
            "p:3": ["cant_tell", "cant_tell"],  # nobody can tell
            "p:4": ["B", "cant_tell", "cant_tell"],  # revision at A: original, 1 to 0
            "p:5": [],
        }
    )
    result = tally.tally(study, answers)
    assert [(m.id, m.label, m.unanimous) for m in result.majority] == [
        ("p:0", "revision", True),
        ("p:1", "original", False),
        ("p:4", "original", False),
    ]
    assert result.majority[1].votes == tally.Votes(revision=1, original=2)
    assert [(u.id, u.outcome) for u in result.unresolved] == [("p:2", "tie"), ("p:3", "cant_tell")]
    assert result.unanswered == ["p:5"]
    labels = [(r.id, r.rater, r.label, r.preferred) for r in result.raters]
    assert ("p:1", "r2", "revision", "B") in labels
    assert ("p:3", "r0", "cant_tell", None) in labels
    assert len(result.raters) == len(answers) == 14
    assert tally.summary(result).startswith("14 answers; 3 items with a majority (1 unanimous)")


def test_listening_lines_say_where_the_server_is_reachable() -> None:
    loopback = web.listening_lines("127.0.0.1", 8080, Path("s"), "tok")
    assert loopback[0].startswith("study listening on http://127.0.0.1:8080 (loopback only")
    assert loopback[1] == "organiser page: http://127.0.0.1:8080/o/tok"
    assert "loopback only" in web.listening_lines("::1", 1, Path("s"), "t")[0]
    exposed = web.listening_lines("0.0.0.0", 8080, Path("s"), "tok")[0]
    assert "bound to 0.0.0.0: anyone who can reach this address" in exposed


def test_persona_lines_and_model_flags_parse() -> None:
    assert web.persona_rows("age: 5\nfree text\nx: a: b") == [
        ("age", "5"), ("", "free text"), ("x", "a: b"),
    ]  # fmt: skip
    assert cli._model("gpt=runs/x/verify/verify.labels.jsonl")[0] == "gpt"
    assert cli._model("runs/big/verify/verify.labels.jsonl")[0] == "big"
    with pytest.raises(argparse.ArgumentTypeError):
        cli._model("=x")
