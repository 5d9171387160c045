"""`agree` on label files (matching by id, errors by file and line) and `verify`'s sampling,
order recording and labels, run in-process on the in-memory queue."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InputError, SettingsError
from engine.evaluation import agree, verify
from engine.output import OutputFiles
from engine.queue.memory import MemoryQueue
from engine.run import Coordinator, RunConfig
from tests.fakes import NO_BACKOFF, FakeTransport, fake_dispatcher, user_text


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_agree_matches_ids_and_reports_kappa(tmp_path: Path) -> None:
    a = write(
        tmp_path / "a.jsonl",
        [json.dumps({"id": i, "label": i % 2 == 0, "x": 1}) for i in range(10)],
    )
    b = write(
        tmp_path / "b.jsonl",
        [json.dumps({"id": str(i), "label": i % 2 == 0 or i == 1}) for i in range(1, 12)],
    )
    report = agree.agree(a, b)
    assert (report.n, report.only_a, report.only_b) == (9, 1, 2)
    assert report.labels == ["false", "true"]
    assert report.confusion == [[4, 1], [0, 4]]
    assert report.agreement == pytest.approx(8 / 9)
    assert report.kappa_low <= report.kappa <= report.kappa_high
    assert "Cohen's kappa" in agree.render(report, "a", "b")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"b\.jsonl:2: not a label line"),
        ('{"id": 1}', "missing required field"),
        ('{"id": 0, "label": "x"}', r"b\.jsonl:2: duplicate id '0' \(line 1\)"),
    ],
)
def test_agree_names_the_file_and_line_of_a_bad_line(
    tmp_path: Path, line: str, message: str
) -> None:
    a = write(tmp_path / "a.jsonl", ['{"id": 0, "label": "x"}'])
    b = write(tmp_path / "b.jsonl", ['{"id": 0, "label": "x"}', line])
    with pytest.raises(InputError, match=message):
        agree.agree(a, b)


def test_agree_refuses_files_with_no_common_id(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", ['{"id": 0, "label": "x"}'])
    b = write(tmp_path / "b.jsonl", ['{"id": 1, "label": "x"}'])
    with pytest.raises(InputError, match="no id in common"):
        agree.agree(a, b)


def pairs_file(run_dir: Path, count: int) -> None:
    lines = [
        json.dumps(
            {
                "persona_id": f"p{i}",
                "persona": f"persona {i}",
                "prompt_id": "q1",
                "prompt": "why?",
                "rejected": f"original {i}",
                "chosen": f"revised {i}",
                "extra": 0,
            }
        )
        for i in range(count)
    ]
    write(run_dir / "pairs.jsonl", lines)


def prefers_revision(payload: bytes) -> str:
    text = user_text(payload)
    first = text.split("Answer A:\n")[1].split("\n")[0]
    return json.dumps({"reasoning": "r", "preferred": "A" if "revised" in first else "B"})


async def test_verify_records_the_order_and_writes_labels_in_agree_format(tmp_path: Path) -> None:
    pairs_file(tmp_path, 40)
    pairs, digest = verify.read_pairs(tmp_path)
    items = verify.draw_items(pairs, 30, seed=2)
    assert items == verify.draw_items(pairs, 30, seed=2)
    positions = {i.revision_position for i in items}
    assert positions == {"A", "B"}
    pipeline = verify.VerifyPipeline(verify.VerifySettings(pairs_digest=digest, n=30), items)
    queue = MemoryQueue()
    await pipeline.prepare(queue)
    output = OutputFiles(tmp_path)
    await output.recover(queue)
    config = RunConfig(concurrency=4, retry=NO_BACKOFF)
    dispatcher = fake_dispatcher(FakeTransport(prefers_revision), validator=pipeline.check)
    try:
        await Coordinator(queue, dispatcher, output, config, pipeline).run()
    finally:
        output.close()
    await pipeline.export(queue, tmp_path, {}, pipeline.default_formats)
    labels = agree.read_labels(tmp_path / verify.LABELS)
    assert set(labels.values()) == {"revision"}
    assert len(labels) == 30
    report = json.loads((tmp_path / "verify.report.json").read_text())
    assert report["revision_preferred"]["value"] == 1.0
    share_a = sum(i.revision_position == "A" for i in items) / 30
    assert report["chose_a"]["value"] == pytest.approx(share_a)
    await queue.close()


def test_verify_refuses_a_run_that_is_not_finished(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a finished generation run"):
        verify.read_pairs(tmp_path)
    pairs_file(tmp_path, 3)
    with pytest.raises(SettingsError, match="only 3 pairs"):
        verify.draw_items(verify.read_pairs(tmp_path)[0], 5, seed=0)


def test_verify_reads_a_run_exported_as_parquet(tmp_path: Path) -> None:
    (tmp_path / "jsonl").mkdir()
    pairs_file(tmp_path / "jsonl", 12)
    rows = verify.read_pairs(tmp_path / "jsonl")[0]
    (tmp_path / "parquet").mkdir()
    table = pa.Table.from_pylist(msgspec.to_builtins(rows))
    pq.write_table(
        table.append_column("topic", pa.array(["t"] * 12)), tmp_path / "parquet" / "pairs.parquet"
    )
    pairs, digest = verify.read_pairs(tmp_path / "parquet")
    assert pairs == rows
    assert (
        digest == hashlib.sha256((tmp_path / "parquet" / "pairs.parquet").read_bytes()).hexdigest()
    )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "pairs.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a pairs file"):
        verify.read_pairs(tmp_path / "bad")
