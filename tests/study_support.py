"""The study's real parts for tests: a finished run's pairs.jsonl, `study create`, and
`study serve` as a child process on a free loopback port, spoken to over HTTP (urllib)."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from engine.study import design, store, tally
from tests.helpers import engine_cmd, engine_env, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"^study listening on (http://\S+) ")


def write_pairs(
    run_dir: Path, personas: int, questions: int, text: Mapping[str, str] | None = None
) -> Path:
    """A finished run's pairs.jsonl: `personas` x `questions` pairs; `text` overrides fields
    (persona_id and prompt_id get a counter appended, so ids stay distinct)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    t = dict(text or {})
    lines = []
    for p in range(personas):
        for q in range(questions):
            lines.append(
                {
                    "persona_id": f"{t.get('persona_id', 'p')}{p}",
                    "persona": t.get("persona", f"age: {30 + p}\nsex: Female\nquirk: number {p}"),
                    "prompt_id": f"{t.get('prompt_id', 'q')}{q}",
                    "prompt": t.get("prompt", f"Question {q} for persona {p}?"),
                    "topic": "t",
                    "split": "train",
                    "rejected": t.get("rejected", f"original answer {p}.{q}"),
                    "critique": "c",
                    "chosen": t.get("chosen", f"revised answer {p}.{q}"),
                }
            )
    path = run_dir / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def create_study(
    run_dir: Path, out: Path, *, personas: int, questions: int, raters: int = 2, seed: int = 0
) -> Path:
    """`study create`, in this process (its command line is tested in test_study_cli.py)."""
    design.create(
        run_dir, out, personas=personas, questions=questions, raters_per_persona=raters,
        seed=seed, base_url="http://127.0.0.1:8080",
    )  # fmt: skip
    return out


def links(study: Path) -> list[dict[str, str]]:
    with (study / "links.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def organiser_path(study: Path) -> str:
    return urllib.parse.urlsplit((study / "organiser.txt").read_text().strip()).path


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 303 is returned as it is, to be checked


_opener = urllib.request.build_opener(_NoRedirect)


class Reply:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode()


def http(url: str, form: Mapping[str, str] | None = None, raw: bytes | None = None) -> Reply:
    """GET `url`, or POST `form` (urlencoded) or `raw` bytes to it; redirects not followed."""
    data = raw if raw is not None else None if form is None else urllib.parse.urlencode(form)
    request = urllib.request.Request(url, data=data.encode() if isinstance(data, str) else data)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with _opener.open(request, timeout=30) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, dict(error.headers), error.read())


class Server:
    def __init__(self, process: subprocess.Popen[str], base_url: str, lines: list[str]) -> None:
        self.process = process
        self.base_url = base_url
        self.lines = lines

    def get(self, path: str) -> Reply:
        return http(self.base_url + path)

    def answer(self, path: str, number: int, choice: str, justification: str) -> Reply:
        form = {"choice": choice, "justification": justification}
        return http(f"{self.base_url}{path}/{number}", form)


@contextlib.contextmanager
def serving(study: Path, *args: str) -> Iterator[Server]:
    """`python -m engine study serve STUDY --port 0 ARGS`; killed and reaped on the way out."""
    process = subprocess.Popen(
        engine_cmd("study", "serve", str(study), "--port", "0", *args),
        cwd=ROOT, env=engine_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        match = LISTENING.match(lines[0])
        assert match, f"serve said {lines!r}, stderr {process.stderr and process.stderr.read()}"
        yield Server(process, match.group(1), lines)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


Lines = list[dict[str, Any]]


def export(study: Path) -> tuple[Lines, Lines, Lines]:
    """`study export` into the study folder, in this process: majority, unresolved and
    per-rater lines, as read back from the files."""
    tally.export(tally.tally(store.load(study), store.read_answers(study)), study / "human.jsonl")
    return (
        read_jsonl(study / "human.jsonl"),
        read_jsonl(study / "human.unresolved.jsonl"),
        read_jsonl(study / "human.raters.jsonl"),
    )
