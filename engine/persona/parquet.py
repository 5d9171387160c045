"""The Parquet views of a PERSONA run's pairs (zstd), written chunk by chunk.

Imported only when an export asks for Parquet: pyarrow adds about 50 MB to a process, which a
run that never exports Parquet should not carry.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.pair import PairRecord, ReleaseRecord

# The process's own allocator, not pyarrow's mimalloc: mimalloc kept ~40 MB more resident for
# an export of 20,000 pairs (198 MB peak against 160 MB), on top of the run's own peak.
pa.set_memory_pool(pa.system_memory_pool())

PAIRS, DPO, RELEASE = "pairs.parquet", "pairs.dpo.parquet", "pairs.release.parquet"
FILES = (PAIRS, DPO, RELEASE)

_CALL = pa.struct(
    [
        ("model", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("cached", pa.bool_()),
        ("shared_by", pa.int64()),
    ]
)
_CALLS = ("answer_call", "critique_call", "revise_call")
_TYPES = {"cost_usd": pa.float64(), **dict.fromkeys(_CALLS, _CALL)}
# Min/max statistics only for the short columns: a text column's would hold two whole texts (a
# persona, a reply) per row group in the footer, which the writer keeps in memory until it
# closes (the export of a full run peaked 13 MB lower without them: 203 MB against 216 MB)
_STATISTICS = frozenset({"persona_id", "prompt_id", "topic", "split", "cost_usd"})
# each view's columns: (column name, the PairRecord field or derived column it holds)
_VIEWS: dict[str, tuple[tuple[str, str], ...]] = {
    PAIRS: tuple((f.encode_name, f.name) for f in msgspec.structs.fields(PairRecord)),
    DPO: (("prompt", "dpo_prompt"), ("chosen", "chosen"), ("rejected", "rejected")),
    RELEASE: tuple(
        (f.encode_name, source)
        for f, source in zip(
            msgspec.structs.fields(ReleaseRecord),
            ("persona", "prompt", "rejected", "critique", "chosen", "split"),
            strict=True,
        )
    ),
}


class ParquetViews:
    """The open Parquet files among `paths` (file name → where to write it)."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self._writers: list[tuple[pq.ParquetWriter, tuple[tuple[str, str], ...]]] = []
        try:
            for name, path in paths.items():
                view = _VIEWS[name]
                schema = pa.schema([(col, _TYPES.get(src, pa.string())) for col, src in view])
                stats = [col for col, src in view if src in _STATISTICS]
                writer = pq.ParquetWriter(path, schema, compression="zstd", write_statistics=stats)
                self._writers.append((writer, view))
        except BaseException:
            self.close()
            raise

    def write(self, records: list[PairRecord], dpo_prompts: list[str]) -> None:
        """One row group per view; the views share their columns, built once."""
        columns = _columns(records)
        columns["dpo_prompt"] = pa.array(dpo_prompts, pa.string())
        for writer, view in self._writers:
            arrays = [columns[src] for _, src in view]
            writer.write_table(pa.Table.from_arrays(arrays, schema=writer.schema))

    def close(self) -> None:
        for writer, _ in self._writers:
            writer.close()
        self._writers.clear()


def _columns(records: list[PairRecord]) -> dict[str, pa.Array]:
    columns: dict[str, pa.Array] = {}
    for field in msgspec.structs.fields(PairRecord):
        values = [getattr(r, field.name) for r in records]
        if field.name in _CALLS:
            columns[field.name] = pa.array(msgspec.to_builtins(values), _CALL)
        else:
            columns[field.name] = pa.array(values, _TYPES.get(field.name, pa.string()))
    return columns
