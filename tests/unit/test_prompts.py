"""The prompt set: the shipped file, its builder, the loaders, the filters and the split."""

from __future__ import annotations

import itertools
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from engine.persona.paths import DEFAULT_PROMPTS_PATH
from engine.persona.prompt_data import QUESTIONS_BY_TOPIC, Topic
from engine.persona.prompt_select import (
    DropReason,
    DuplicatePromptIdError,
    SplitSizeError,
    apply_rule_filters,
    apportion,
    drop_duplicate_texts,
    normalise_text,
    paper_split_sizes,
    split_prompts,
)
from engine.persona.prompts import (
    PRISM_TOPIC,
    DuplicateIdError,
    DuplicateTextError,
    EmptyFieldError,
    MalformedLineError,
    MissingFieldError,
    PromptFileError,
    build_default_prompts,
    default_prompts,
    encode_prompts,
    load_prism_conversations,
    load_prompts,
    question_problem,
)
from schemas.prompt import Prompt

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> list[Prompt]:
    return load_prompts(DEFAULT_PROMPTS_PATH)


# --- the shipped file -------------------------------------------------------------------------


def test_shipped_file_is_big_filtered_and_unique(shipped: list[Prompt]) -> None:
    assert len(shipped) >= 1050
    result = apply_rule_filters(shipped)
    assert result.kept == tuple(shipped)
    assert set(result.dropped.values()) == {0}
    assert len({normalise_text(p.text) for p in shipped}) == len(shipped)
    assert [p.id for p in shipped] == [f"q{i:04d}" for i in range(1, len(shipped) + 1)]


def test_every_topic_is_covered_evenly(shipped: list[Prompt]) -> None:
    counts = Counter(p.topic for p in shipped)
    assert set(counts) == {topic.value for topic in Topic}
    assert min(counts.values()) >= 40
    assert max(counts.values()) <= 2 * min(counts.values())


def _content_words(text: str) -> frozenset[str]:
    stop = {"a", "an", "the", "is", "it", "to", "of", "in", "for", "and", "or", "be", "i"}
    stop |= {"my", "should", "do", "you", "that", "are", "on", "with", "if", "as", "at", "by"}
    return frozenset(w for w in re.findall(r"[a-z']+", text.lower()) if w not in stop)


def test_shipped_texts_have_no_near_duplicates(shipped: list[Prompt]) -> None:
    words = [(p.text, _content_words(p.text)) for p in shipped]
    close = [
        (a, b)
        for (a, wa), (b, wb) in itertools.combinations(words, 2)
        if len(wa & wb) >= 0.6 * len(wa | wb)
    ]
    assert close == []


def test_builder_reproduces_the_shipped_file_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "prompts.jsonl"
    count = build_default_prompts(out)
    assert out.read_bytes() == DEFAULT_PROMPTS_PATH.read_bytes()
    assert count == sum(len(questions) for _, questions in QUESTIONS_BY_TOPIC)
    assert encode_prompts(default_prompts()) == out.read_bytes()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "engine.persona.prompts", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)


def test_cli_build_and_check(tmp_path: Path) -> None:
    out = tmp_path / "built.jsonl"
    assert _cli("build", "--out", str(out)).returncode == 0
    assert out.read_bytes() == DEFAULT_PROMPTS_PATH.read_bytes()
    assert _cli("check", "--path", str(out)).returncode == 0
    out.write_bytes(out.read_bytes().replace(b"q0001", b"q9999"))
    stale = _cli("check", "--path", str(out))
    assert stale.returncode == 1
    assert "differs" in stale.stderr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Is it fair?", "too_few_words"),
        ("Tell me about voting in elections.", "no_question_mark"),
        ("Should I vote  for them?", "whitespace"),
        ("Should I vote for them? ", "whitespace"),
        ("Is it \u201cfair\u201d to tax wealth?", "non-ASCII"),
        ("Should voting be compulsory?Should it be online?", "missing comma"),
    ],
)
def test_question_problems_are_named(text: str, fragment: str) -> None:
    problem = question_problem(text)
    assert problem is not None
    assert fragment in problem


def test_a_good_question_has_no_problem() -> None:
    assert question_problem("Is it wrong to skip the family reunion this year?") is None


# --- our loader --------------------------------------------------------------------------------

GOOD = b'{"id": "a1", "topic": "guns", "text": "Should guns be banned in cities?"}\n'


def _write(tmp_path: Path, *lines: bytes) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def test_loader_reads_lines_and_skips_blank_ones(tmp_path: Path) -> None:
    second = b'{"id": "a2", "topic": "food_diet", "text": "Is eating meat wrong these days?"}\n'
    path = _write(tmp_path, GOOD, b"\n", second)
    assert load_prompts(path) == [
        Prompt(id="a1", topic="guns", text="Should guns be banned in cities?"),
        Prompt(id="a2", topic="food_diet", text="Is eating meat wrong these days?"),
    ]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (b'{"id": "b", "topic": "guns", "text": "oops"\n', MalformedLineError),
        (b'{"id": 7, "topic": "guns", "text": "Is it fine to own one?"}\n', MalformedLineError),
        (b'{"id": "b", "topic": "g", "text": "Is it a good idea?", "x": 1}\n', MalformedLineError),
        (b'{"id": "b", "text": "Is a gun a good idea at home?"}\n', MissingFieldError),
        (b'{"id": "b", "topic": "guns", "text": "   "}\n', EmptyFieldError),
        (
            b'{"id": "a1", "topic": "guns", "text": "Is hunting with rifles fine?"}\n',
            DuplicateIdError,
        ),
        (
            b'{"id": "b", "topic": "x", "text": "should GUNS be banned  in cities?"}\n',
            DuplicateTextError,
        ),
    ],
)
def test_loader_errors_name_file_and_line(
    tmp_path: Path, bad: bytes, error: type[PromptFileError]
) -> None:
    path = _write(tmp_path, GOOD, b"\n", bad)
    with pytest.raises(error) as caught:
        load_prompts(path)
    assert caught.value.path == path
    assert caught.value.line == 3
    assert f"{path}:3:" in str(caught.value)


def test_loader_error_details(tmp_path: Path) -> None:
    with pytest.raises(MissingFieldError) as missing:
        load_prompts(_write(tmp_path, b'{"id": "z", "text": "Is this a good question?"}\n'))
    assert missing.value.field == "topic"
    with pytest.raises(EmptyFieldError) as empty:
        load_prompts(_write(tmp_path, b'{"id": "z", "topic": "", "text": "Is it?"}\n'))
    assert empty.value.field == "topic"
    with pytest.raises(DuplicateIdError) as duplicate:
        load_prompts(_write(tmp_path, GOOD, GOOD.replace(b"cities", b"towns")))
    assert (duplicate.value.prompt_id, duplicate.value.first_line) == ("a1", 1)


# --- PRISM --------------------------------------------------------------------------------------


def _prism_line(conversation_id: str | int, opening: str | None) -> bytes:
    row: dict[str, object] = {
        "conversation_id": conversation_id,
        "user_id": "user1",
        "conversation_type": "controversy guided",
        "conversation_history": [{"turn": 0, "role": "user", "content": "x"}],
        "included_in_balanced_subset": True,
    }
    if opening is not None:
        row["opening_prompt"] = opening
    return msgspec.json.encode(row) + b"\n"


def test_prism_loader_streams_opening_prompts(tmp_path: Path) -> None:
    path = tmp_path / "conversations.jsonl"
    path.write_bytes(
        _prism_line("c0", "  Should the death penalty be abolished everywhere?\n")
        + _prism_line("c1", "Hello")
        + _prism_line(2, "Why?")
        + _prism_line("c3", "Tell me a story about a brave dragon")
        + _prism_line("c4", "should the DEATH penalty be abolished everywhere?")
    )
    prompts = list(load_prism_conversations(path))
    assert [p.id for p in prompts] == ["c0", "c1", "2", "c3", "c4"]
    assert {p.topic for p in prompts} == {PRISM_TOPIC}
    assert prompts[0].text == "Should the death penalty be abolished everywhere?"
    filtered = apply_rule_filters(prompts)
    assert [p.id for p in filtered.kept] == ["c0", "c4"]
    assert filtered.dropped == {DropReason.NO_QUESTION_MARK: 2, DropReason.TOO_FEW_WORDS: 1}
    unique = drop_duplicate_texts(filtered.kept)
    assert [p.id for p in unique.kept] == ["c0"]
    assert unique.dropped == {DropReason.DUPLICATE_TEXT: 1}


def test_prism_loader_is_lazy_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "conversations.jsonl"
    path.write_bytes(_prism_line("c0", "Is it okay to eat meat?") + _prism_line("c1", None))
    stream = load_prism_conversations(path)
    assert next(stream).id == "c0"
    with pytest.raises(MissingFieldError) as missing:
        next(stream)
    assert (missing.value.line, missing.value.field) == (2, "opening_prompt")
    path.write_bytes(_prism_line("c0", "Is it okay?") + b"\n" + _prism_line("c0", "Is it?"))
    with pytest.raises(DuplicateIdError) as duplicate:
        list(load_prism_conversations(path))
    assert (duplicate.value.line, duplicate.value.first_line) == (3, 1)
    path.write_bytes(b"[1, 2]\n")
    with pytest.raises(MalformedLineError) as malformed:
        list(load_prism_conversations(path))
    assert f"{path}:1:" in str(malformed.value)


# --- split --------------------------------------------------------------------------------------


def test_paper_split_sizes() -> None:
    assert paper_split_sizes(3868) == (3000, 868)
    assert paper_split_sizes(1177) == (913, 264)
    assert paper_split_sizes(0) == (0, 0)


@pytest.mark.parametrize("total", [0, 1, 7, 100, 913])
def test_apportion_is_exact_and_within_one(total: int) -> None:
    sizes = {"a": 47, "b": 48, "c": 3, "d": 0, "e": 47}
    shares = apportion(total, sizes)
    assert sum(shares.values()) == total
    weight = sum(sizes.values())
    for key, size in sizes.items():
        assert abs(shares[key] - total * size / weight) < 1


def test_split_of_the_shipped_set_is_disjoint_and_stratified(shipped: list[Prompt]) -> None:
    n_train, n_heldout = paper_split_sizes(len(shipped))
    split = split_prompts(shipped, n_train, n_heldout, seed=11)
    train_ids = {p.id for p in split.train}
    heldout_ids = {p.id for p in split.heldout}
    assert (len(train_ids), len(heldout_ids)) == (n_train, n_heldout)
    assert not train_ids & heldout_ids
    assert train_ids | heldout_ids == {p.id for p in shipped}
    sizes = Counter(p.topic for p in shipped)
    train = Counter(p.topic for p in split.train)
    for topic, size in sizes.items():
        assert abs(train[topic] - size * n_train / len(shipped)) <= 1


def test_split_is_deterministic_and_order_independent(shipped: list[Prompt]) -> None:
    first = split_prompts(shipped, 900, 250, seed=3)
    again = split_prompts(shipped, 900, 250, seed=3)
    shuffled = list(shipped)
    random.Random(0).shuffle(shuffled)
    reordered = split_prompts(shuffled, 900, 250, seed=3)
    assert first == again
    assert {p.id for p in reordered.train} == {p.id for p in first.train}
    assert {p.id for p in reordered.heldout} == {p.id for p in first.heldout}
    other = split_prompts(shipped, 900, 250, seed=4)
    assert {p.id for p in other.train} != {p.id for p in first.train}


def test_split_of_a_subset_keeps_topic_proportions(shipped: list[Prompt]) -> None:
    n_train, n_heldout = 300, 87
    split = split_prompts(shipped, n_train, n_heldout, seed=5)
    selected = n_train + n_heldout
    sizes = Counter(p.topic for p in shipped)
    train = Counter(p.topic for p in split.train)
    heldout = Counter(p.topic for p in split.heldout)
    assert (sum(train.values()), sum(heldout.values())) == (n_train, n_heldout)
    for topic, size in sizes.items():
        contribution = train[topic] + heldout[topic]
        assert abs(contribution - size * selected / len(shipped)) <= 1
        assert abs(train[topic] - contribution * n_train / selected) <= 1


def test_split_rejects_bad_sizes_and_duplicate_ids(shipped: list[Prompt]) -> None:
    with pytest.raises(SplitSizeError) as too_many:
        split_prompts(shipped[:10], 8, 3, seed=0)
    assert too_many.value.n_available == 10
    with pytest.raises(SplitSizeError):
        split_prompts(shipped[:10], -1, 3, seed=0)
    with pytest.raises(DuplicatePromptIdError) as duplicate:
        split_prompts([*shipped[:3], shipped[0]], 2, 1, seed=0)
    assert duplicate.value.prompt_id == shipped[0].id
