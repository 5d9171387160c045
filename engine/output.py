"""results.jsonl / errors.jsonl: exactly once, derived from the queue.

The invariant: the queue's meta table records, in the same transaction that marks jobs
finished, how many bytes of each output file are committed. The writer appends the lines of a
batch *before* committing it, so after a crash the file holds the committed prefix plus at
most one uncommitted (possibly torn) tail, which `recover` truncates; those jobs were never
marked finished, so they run again and are appended again. A rebuild (export, or a file
shorter than recorded) writes every finished job to a temporary file and renames it over, with
a `rebuild_pending` flag so that a crash in the middle simply rebuilds again.

results.jsonl is kept this way only for pipelines that name it among their default formats
(request files, the bench): a PERSONA run's output is its pairs, and a line per call of its
635,577 would be most of its disk. Its results.jsonl is then written on demand (`export
--format results`), whole, as a snapshot of the queue.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path

import msgspec
import structlog

from engine.crashpoints import NONE as NO_CRASH
from engine.crashpoints import CrashPoints
from engine.errors import storage_error_of
from engine.prices import Price
from engine.queue import WorkQueue
from schemas.batch import BatchError, BatchOutputLine, BatchResponse, EngineMeta, encoder
from schemas.job import Done, ErrorInfo, Failed, Status, TerminalRow

RESULTS = "results.jsonl"
ERRORS = "errors.jsonl"
_FILES = (RESULTS, ERRORS)
_REBUILD_PENDING = "output.rebuild_pending"
_error_decoder = msgspec.json.Decoder(ErrorInfo)
_any_decoder = msgspec.json.Decoder()
log = structlog.get_logger()


def _size_key(name: str) -> str:
    return f"output.{name}.bytes"


async def mark_for_rebuild(queue: WorkQueue) -> bool:
    """Make the next `recover` rewrite both files from the queue; return whether one was
    already due. Set *before* jobs leave DONE or FAILED (`requeue_failed`), so a crash in
    between still rebuilds: a retried job must not keep its old line in errors.jsonl."""
    pending = await queue.get_meta(_REBUILD_PENDING) == "1"
    await queue.set_meta({_REBUILD_PENDING: "1"})
    return pending


async def unmark_rebuild(queue: WorkQueue) -> None:
    """Nothing changed after all (no job was requeued): no rebuild needed."""
    await queue.set_meta({_REBUILD_PENDING: "0"})


def call_cost(row: TerminalRow, prices: Mapping[str, Price]) -> float | None:
    """What this job's successful call cost (nothing when it came from the cache)."""
    price = prices.get(row.model)
    if price is None:
        return None
    if row.cached:
        return 0.0
    return round(price.cost(row.prompt_tokens, row.completion_tokens), 8)


def render_line(row: TerminalRow, prices: Mapping[str, Price]) -> bytes:
    """One Batch API output line (with its newline) for a finished job."""
    meta = EngineMeta(
        attempts=row.attempts,
        latency_ms=row.latency_ms,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        elapsed_ms=_elapsed_ms(row),
        finished_at=row.finished_at,
        cached=row.cached,
        cost_usd=call_cost(row, prices) if row.status is Status.DONE else None,
    )
    line_id = f"batch_req_{row.seq:010d}"
    request_id = row.request_id or ""
    if row.status is Status.DONE and row.result is not None:
        response = BatchResponse(row.status_code or 200, request_id, msgspec.Raw(row.result))
        line = BatchOutputLine(line_id, row.id, response, None, meta)
    else:
        error = _error_decoder.decode(row.error) if row.error else ErrorInfo("Unknown", "")
        http = None
        if error.status_code is not None:
            http = BatchResponse(error.status_code, request_id, _json_or_string(error.body))
        line = BatchOutputLine(line_id, row.id, http, BatchError(error.kind, error.message), meta)
    return encoder.encode(line) + b"\n"


def _elapsed_ms(row: TerminalRow) -> float | None:
    if row.first_started_at is None or row.finished_at is None:
        return None
    return round((row.finished_at - row.first_started_at) * 1000.0, 3)


def _json_or_string(body: str | None) -> msgspec.Raw:
    """The provider's error body as JSON when it is JSON, else as a JSON string."""
    if body:
        try:
            return msgspec.Raw(encoder.encode(_any_decoder.decode(body)))
        except msgspec.DecodeError:
            pass
    return msgspec.Raw(encoder.encode(body))


def row_of(outcome: Done | Failed) -> TerminalRow:
    if isinstance(outcome, Done):
        return TerminalRow(
            outcome.seq,
            outcome.job_id,
            Status.DONE,
            outcome.attempts,
            outcome.body,
            None,
            outcome.status_code,
            outcome.request_id,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            outcome.latency_ms,
            outcome.first_started_at,
            outcome.finished_at,
            outcome.cached,
            outcome.model,
        )
    return TerminalRow(
        outcome.seq,
        outcome.job_id,
        Status.FAILED,
        outcome.attempts,
        None,
        encoder.encode(outcome.error),
        outcome.error.status_code,
        outcome.request_id,
        0,
        0,
        None,
        outcome.first_started_at,
        outcome.finished_at,
    )


class OutputFiles:
    """The run directory's JSONL files kept as jobs finish (errors.jsonl, and results.jsonl
    with `with_results`), appended only through `append`."""

    def __init__(
        self,
        run_dir: Path,
        crash: CrashPoints = NO_CRASH,
        prices: Mapping[str, Price] | None = None,
        with_results: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self._prices: Mapping[str, Price] = prices or {}
        self._crash = crash
        self._files = _FILES if with_results else (ERRORS,)
        self._fds: dict[str, int] = {}
        self._sizes: dict[str, int] = {}

    async def recover(self, queue: WorkQueue) -> None:
        """Make the files match the queue exactly, then open them for appending."""
        files = self._files
        recorded = {n: int(await queue.get_meta(_size_key(n)) or 0) for n in files}
        pending = await queue.get_meta(_REBUILD_PENDING) == "1"
        actual = {n: self._size_on_disk(n) for n in files}
        if pending or any(actual[n] < recorded[n] for n in files):
            await self.rebuild(queue)
            return
        for name in files:
            if actual[name] > recorded[name]:
                log.info("output.truncated", file=name, dropped_bytes=actual[name] - recorded[name])
            self._open(name, truncate_to=recorded[name])

    def mark(self) -> dict[str, int]:
        """The files' sizes now: what `rollback` cuts them back to."""
        return dict(self._sizes)

    def rollback(self, mark: Mapping[str, int]) -> None:
        """Cut the files back to `mark` after a batch that was not committed (a full disk):
        nothing torn is left behind. Best effort: `recover` would cut them back anyway."""
        for name, size in mark.items():
            fd = self._fds.get(name)
            if fd is None:
                continue
            try:
                os.ftruncate(fd, size)
                os.lseek(fd, size, os.SEEK_SET)
            except OSError:
                continue
            self._sizes[name] = size

    def append(self, rows: Iterable[TerminalRow]) -> dict[str, str]:
        """Write the lines of finished jobs; return the meta values to commit with them."""
        meta: dict[str, str] = {}
        for name, data in _render(rows, self._prices, self._files).items():
            half = len(data) // 2
            self._write_all(name, data[:half])
            self._crash.reach("mid_append")
            self._write_all(name, data[half:])
            meta[_size_key(name)] = str(self._sizes[name])
        return meta

    async def rebuild(self, queue: WorkQueue) -> None:
        """Rewrite the files from the queue (crash-safe: a crash means rebuild again)."""
        self.close()
        await queue.set_meta({_REBUILD_PENDING: "1"})
        sizes = await self._rewrite(queue, self._files)
        meta = {_size_key(n): str(sizes[n]) for n in self._files}
        await queue.set_meta({**meta, _REBUILD_PENDING: "0"})
        for name in self._files:
            self._open(name, truncate_to=sizes[name])

    async def snapshot_results(self, queue: WorkQueue) -> None:
        """Write results.jsonl whole from the queue when it is not kept as jobs finish."""
        if RESULTS not in self._files:
            await self._rewrite(queue, (RESULTS,))

    async def _rewrite(self, queue: WorkQueue, files: tuple[str, ...]) -> dict[str, int]:
        """Write `files` from the queue under temporary names, then rename them over."""
        tmp = {n: f".{n}.tmp" for n in files}
        try:
            for name in files:
                self._open(tmp[name], truncate_to=0)
            # errors.jsonl alone needs only the failed jobs (no result body read or decoded)
            terminal = queue.iter_terminal(failed_only=RESULTS not in files)
            async for rows in _chunks(terminal, 2000):
                for name, data in _render(rows, self._prices, files).items():
                    self._write_all(tmp[name], data)
            sizes = {n: self._sizes[tmp[n]] for n in files}
            for name in tmp.values():
                os.fsync(self._fds[name])
        except BaseException:
            self._close(tmp.values())  # a full disk: no half-written copy left taking the space
            for name in tmp.values():
                (self.run_dir / name).unlink(missing_ok=True)
            raise
        self._close(tmp.values())
        for name in files:
            os.replace(self.run_dir / tmp[name], self.run_dir / name)
        _fsync_dir(self.run_dir)
        return sizes

    def _close(self, names: Iterable[str]) -> None:
        for name in list(names):
            if (fd := self._fds.pop(name, None)) is not None:
                del self._sizes[name]
                os.close(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._sizes.clear()

    def _size_on_disk(self, name: str) -> int:
        try:
            return (self.run_dir / name).stat().st_size
        except FileNotFoundError:
            return -1

    def _open(self, name: str, truncate_to: int) -> None:
        try:
            fd = os.open(self.run_dir / name, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error_of(exc, self.run_dir / name) or exc from None
        try:
            os.ftruncate(fd, truncate_to)
            os.lseek(fd, truncate_to, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        self._fds[name] = fd
        self._sizes[name] = truncate_to

    def _write_all(self, name: str, data: bytes) -> None:
        fd = self._fds[name]
        view = memoryview(data)
        start = self._sizes[name]
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            error = storage_error_of(exc, self.run_dir / name)
            self.rollback({name: start})  # the part written: nothing torn stays behind
            raise error or exc from None
        self._sizes[name] += len(data)


async def export_results(queue: WorkQueue, run_dir: Path, prices: Mapping[str, Price]) -> None:
    """results.jsonl written whole, for a run that does not keep it as jobs finish."""
    await OutputFiles(run_dir, prices=prices, with_results=False).snapshot_results(queue)


def _render(
    rows: Iterable[TerminalRow], prices: Mapping[str, Price], files: tuple[str, ...]
) -> dict[str, bytes]:
    """The bytes to append to each of `files` (only files that get lines)."""
    chunks: dict[str, list[bytes]] = {name: [] for name in files}
    for row in rows:
        lines = chunks.get(RESULTS if row.status is Status.DONE else ERRORS)
        if lines is not None:
            lines.append(render_line(row, prices))
    return {name: b"".join(lines) for name, lines in chunks.items() if lines}


async def _chunks(rows: AsyncIterator[TerminalRow], size: int) -> AsyncIterator[list[TerminalRow]]:
    chunk: list[TerminalRow] = []
    async for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
