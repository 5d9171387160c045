"""`python -m engine verify`: does a persona prefer the revision? (PERSONA.md section 4)

    python -m engine verify --run-dir runs/persona [--n 500] [--judge-model J] [--seed 0]
        [--out-dir RUN_DIR/verify] [every engine flag]

For `--n` pairs sampled (seeded) from a finished generation run's pairs.jsonl, a judge told
to be the persona chooses between the original answer and the revision, shown as A and B in
an order drawn per item and recorded. One engine job per item (`verify:{persona}:{prompt}`)
in the out dir's own queue (resume, cache, rate limits as any run). Written there:
verify.labels.jsonl (agree's format: label "revision" or "original", plus the positions),
verify.report.json and verify.report.md (preference rate for the revision with its
bootstrap interval; the rate of choosing A, where 0.5 is no position bias).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from engine.errors import InputError, SettingsError
from engine.evaluation import REPORT_FORMAT, stats
from engine.evaluation.report import SIMULATED_NOTE
from engine.evaluation.verdicts import FormatError, json_text, reply_text
from engine.inputs import canonical_body, fingerprint
from engine.persona.run import SettingsChanged
from engine.pipeline import PIPELINE_KEY, RESULTS_FORMAT
from engine.prices import Price
from engine.queue import WorkQueue
from schemas.job import ClaimedJob, NewJob, Status
from workers.client import CallResult
from workers.errors import InvalidOutput

NAME = "verify"
ITEM_KIND = "item"
SETTINGS_KEY = "verify.settings"
LABELS = "verify.labels.jsonl"

SYSTEM = "You are the person described below. Answer only as that person would."
USER = """Who you are:
{persona}

You asked: {question}

Answer A:
{a}

Answer B:
{b}

Which answer do you, as this person, prefer? Reply with a JSON object with the keys
"reasoning" (a sentence) and "preferred" ("A" or "B")."""
SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "preference",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string"},
                "preferred": {"type": "string", "enum": ["A", "B"]},
            },
            "required": ["reasoning", "preferred"],
            "additionalProperties": False,
        },
    },
}
TEMPLATE_VERSION = hashlib.sha256((SYSTEM + USER).encode()).hexdigest()[:12]


class VerifySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pairs_digest: str = ""
    source: str = ""
    n: int = 500
    seed: int = 0
    judge_model: str = "sim-small"
    template_version: str = TEMPLATE_VERSION
    simulated: bool = False


class SourcePair(msgspec.Struct, frozen=True):
    persona_id: str
    persona: str
    prompt_id: str
    prompt: str
    rejected: str
    chosen: str


class Item(msgspec.Struct, frozen=True):
    id: str
    persona: str
    question: str
    revision_position: Literal["A", "B"]
    a: str
    b: str


class Preference(msgspec.Struct, frozen=True):
    reasoning: str
    preferred: Literal["A", "B"]


class VerifyReport(msgspec.Struct):
    note: str | None
    source: str
    judge_model: str
    seed: int
    template_version: str
    sampled: int
    judged: int
    revision_preferred: stats.Estimate | None
    chose_a: stats.Estimate | None  # 0.5: no position bias
    position_bias: float | None  # |chose_a - 0.5| * 2


_encoder = msgspec.json.Encoder()
_pair_decoder = msgspec.json.Decoder(SourcePair)
_item_decoder = msgspec.json.Decoder(Item)
_pref_decoder = msgspec.json.Decoder(Preference)


def parse_preference(text: str) -> Preference:
    try:
        return _pref_decoder.decode(json_text(text))
    except msgspec.DecodeError as exc:
        raise FormatError(f"not a preference: {exc}") from None


def read_pairs(run_dir: Path) -> tuple[list[SourcePair], str]:
    """A finished run's pairs (pairs.jsonl, else pairs.parquet) and the digest of the file."""
    path = run_dir / "pairs.jsonl"
    parquet = run_dir / "pairs.parquet"
    if not path.exists() and parquet.exists():
        return _read_parquet_pairs(parquet)
    try:
        raw = path.read_bytes()
    except OSError:
        raise InputError(
            path,
            None,
            "not a finished generation run (no pairs.jsonl or pairs.parquet: run "
            "`generate` to the end, or `export`)",
        ) from None
    pairs = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            pairs.append(_pair_decoder.decode(line))
        except msgspec.DecodeError as exc:
            raise InputError(path, number, f"not a pair: {exc}") from None
    if not pairs:
        raise InputError(path, None, "no pairs: not a finished generation run")
    return pairs, hashlib.sha256(raw).hexdigest()


def _read_parquet_pairs(path: Path) -> tuple[list[SourcePair], str]:
    import pyarrow as pa  # noqa: PLC0415 (only for a run exported as Parquet)
    import pyarrow.parquet as pq  # noqa: PLC0415

    raw = path.read_bytes()
    columns = [f.name for f in msgspec.structs.fields(SourcePair)]
    try:
        rows = pq.read_table(pa.BufferReader(raw), columns=columns).to_pylist()
        pairs = msgspec.convert(rows, list[SourcePair])
    except (pa.ArrowException, msgspec.ValidationError) as exc:
        raise InputError(path, None, f"not a pairs file: {exc}") from None
    if not pairs:
        raise InputError(path, None, "no pairs: not a finished generation run")
    return pairs, hashlib.sha256(raw).hexdigest()


def draw_items(pairs: list[SourcePair], n: int, seed: int) -> list[Item]:
    if n > len(pairs):
        raise SettingsError(f"--n {n}: the run has only {len(pairs)} pairs")
    rng = random.Random(f"verify:{seed}")
    items = []
    for pair in rng.sample(pairs, n):
        first = rng.random() < 0.5
        a, b = (pair.chosen, pair.rejected) if first else (pair.rejected, pair.chosen)
        items.append(
            Item(
                f"{pair.persona_id}:{pair.prompt_id}",
                pair.persona,
                pair.prompt,
                "A" if first else "B",
                a,
                b,
            )
        )
    return items


class VerifyPipeline:
    name = NAME
    export_formats = (REPORT_FORMAT,)
    default_formats = (RESULTS_FORMAT, REPORT_FORMAT)

    def __init__(self, settings: VerifySettings, items: list[Item] | None = None) -> None:
        self.settings = settings
        self.items = items or []

    async def prepare(self, queue: WorkQueue) -> None:
        stored = await queue.get_meta(SETTINGS_KEY)
        if stored is not None:
            same = msgspec.json.decode(stored, type=VerifySettings)
            if msgspec.structs.replace(same, simulated=self.settings.simulated) != self.settings:
                raise SettingsChanged("this out dir was started with other settings or pairs")
            await self.load(queue)
            return
        records = {ITEM_KIND: [(i.id, _encoder.encode(i)) for i in self.items]}
        meta = {SETTINGS_KEY: _encoder.encode(self.settings).decode(), PIPELINE_KEY: NAME}
        await queue.enqueue(map(self.job, self.items), records, meta)

    async def load(self, queue: WorkQueue) -> None:
        raw = await queue.get_meta(SETTINGS_KEY)
        if raw is None:
            raise SettingsError("this directory holds no verify run")
        self.settings = msgspec.json.decode(raw, type=VerifySettings)
        self.items = [_item_decoder.decode(v) async for _, v in queue.iter_records(ITEM_KIND)]

    def job(self, item: Item) -> NewJob:
        user = USER.format(persona=item.persona, question=item.question, a=item.a, b=item.b)
        body = {
            "model": self.settings.judge_model,
            "max_tokens": 256,
            "temperature": 0.0,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
            "response_format": SCHEMA,
        }
        payload = canonical_body(body)
        return NewJob(
            f"verify:{item.id}",
            fingerprint(payload),
            payload,
            "verify",
            0,
            self.settings.judge_model,
            len(payload) // 4 + 256,
        )

    async def build_requests(self, queue: WorkQueue, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        return jobs

    def check(self, job: ClaimedJob, result: CallResult) -> None:
        text = reply_text(result.body)
        try:
            parse_preference(text)
        except FormatError as exc:
            raise InvalidOutput(str(exc), status_code=200, body=text[:4000]) from None

    async def export(
        self,
        queue: WorkQueue,
        run_dir: Path,
        prices: Mapping[str, Price],
        formats: Collection[str],
    ) -> str | None:
        if REPORT_FORMAT not in formats:
            return None
        rows = await queue.done_rows([f"verify:{i.id}" for i in self.items])
        lines, revision, chose_a = [], [], []
        for item in self.items:
            row = rows.get(f"verify:{item.id}")
            if row is None or row.status is not Status.DONE or row.result is None:
                continue
            chosen = parse_preference(reply_text(row.result)).preferred
            label = "revision" if chosen == item.revision_position else "original"
            revision.append(int(label == "revision"))
            chose_a.append(int(chosen == "A"))
            lines.append(
                _encoder.encode(
                    {
                        "id": item.id,
                        "label": label,
                        "preferred": chosen,
                        "revision_position": item.revision_position,
                    }
                )
            )
        (run_dir / LABELS).write_bytes(b"".join(line + b"\n" for line in lines))
        report = self.report(revision, chose_a)
        (run_dir / "verify.report.json").write_bytes(msgspec.json.format(_encoder.encode(report)))
        (run_dir / "verify.report.md").write_text(render(report))
        said = [line for line in render(report).splitlines() if "revision preferred" in line]
        return f"{''.join(said) or 'nothing judged'} -> {run_dir / LABELS}"

    def report(self, revision: list[int], chose_a: list[int]) -> VerifyReport:
        s = self.settings
        pref = stats.accuracy(revision, s.seed) if revision else None
        a = stats.accuracy(chose_a, s.seed) if chose_a else None
        return VerifyReport(
            SIMULATED_NOTE if s.simulated else None,
            s.source,
            s.judge_model,
            s.seed,
            s.template_version,
            len(self.items),
            len(revision),
            pref,
            a,
            None if a is None else abs(a.value - 0.5) * 2,
        )


def render(r: VerifyReport) -> str:
    lines = ["# Verification: does the persona prefer the revision?", ""]
    if r.note:
        lines += [f"**{r.note}**", ""]
    lines += [
        f"- pairs from `{r.source}`, judge `{r.judge_model}`, seed {r.seed}, "
        f"template `{r.template_version}`",
        f"- sampled {r.sampled}, judged {r.judged}",
    ]
    if r.revision_preferred is not None and r.chose_a is not None:
        p, a = r.revision_preferred, r.chose_a
        lines += [
            f"- chose A (first shown): {100 * a.value:.1f} % "
            f"[{100 * a.low:.1f}, {100 * a.high:.1f}] (50 % = no position bias)",
            f"- revision preferred: {100 * p.value:.1f} % [95 % bootstrap "
            f"{100 * p.low:.1f}, {100 * p.high:.1f}] (paper: 96 %)",
        ]
    if r.note:
        lines += ["", f"_{r.note}_"]
    return "\n".join(lines) + "\n"


async def resume(queue: WorkQueue) -> VerifyPipeline:
    pipeline = VerifyPipeline(VerifySettings())
    await pipeline.load(queue)
    return pipeline
