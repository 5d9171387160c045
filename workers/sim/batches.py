"""The simulator's Batch API: `/v1/files` and `/v1/batches`, driven by polls, not by time.

    POST   /v1/files                 multipart upload (purpose, file) -> file object
    GET    /v1/files/{id}            the file object
    GET    /v1/files/{id}/content    the bytes (input, output or error file)
    DELETE /v1/files/{id}
    POST   /v1/batches               {input_file_id, endpoint, completion_window, metadata}
    GET    /v1/batches/{id}          the batch; each retrieve advances it one step
    GET    /v1/batches               newest first, `limit` and `after` cursor pagination
    POST   /v1/batches/{id}/cancel

A batch is `validating` when created, `in_progress` for `batch_polls` retrieves, `finalizing`
for `batch_finalizing_polls` more, then `completed` (or `expired`, `failed`, `cancelled`).
Advancing on retrieves rather than on a clock makes tests independent of the machine's speed.
Each line is answered by the same reply function as `/v1/chat/completions`, so a request gets
the same completion text either way. Faults: a share of lines failing (500, retryable, or 400,
permanent; drawn per custom_id and submission, so a resubmitted line draws again), the N-th
created batch failing validation or expiring with part of its output. Counters record how
many times each custom_id was submitted in a batch.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from workers.sim import bodies

if TYPE_CHECKING:
    from workers.sim.server import Simulator

COMPLETIONS = "/v1/chat/completions"
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class _Line(msgspec.Struct, gc=False):
    """An input line; `body` kept as raw bytes so the request is the one the client sent."""

    custom_id: str = ""
    method: str = ""
    url: str = ""
    body: msgspec.Raw = msgspec.Raw(b"null")


_line_decoder = msgspec.json.Decoder(_Line)


class _File(msgspec.Struct):
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int


class _Batch:
    def __init__(self, id_: str, number: int, input_file_id: str, body: dict[str, Any]) -> None:
        self.id = id_
        self.number = number  # 1-based creation order (which faults apply)
        self.input_file_id = input_file_id
        self.endpoint = str(body.get("endpoint", COMPLETIONS))
        self.completion_window = str(body.get("completion_window", "24h"))
        self.metadata = body.get("metadata") or None
        self.created_at = int(time.time())
        self.status = "validating"
        self.polls = 0
        self.lines: list[_Line] = []
        self.output_file_id: str | None = None
        self.error_file_id: str | None = None
        self.errors: list[dict[str, Any]] = []
        self.completed = 0
        self.failed = 0
        self.times: dict[str, int] = {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "created_at": self.created_at,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "metadata": self.metadata,
            "request_counts": {
                "total": len(self.lines),
                "completed": self.completed,
                "failed": self.failed,
            },
        }
        if self.errors:
            out["errors"] = {"object": "list", "data": self.errors}
        for name, at in self.times.items():
            out[f"{name}_at"] = at
        return out


class BatchApi:
    """The files and batches of one simulator, and its batch counters."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)
        self._prefix = os.urandom(3).hex()
        self._zero()

    def _zero(self) -> None:
        self.submissions: dict[str, int] = {}  # custom_id -> times submitted in a batch
        self.batches_created = 0
        self.lines_served = 0  # 200 lines in output files
        self.max_open = 0  # the most batches open (not yet ended) at once

    def reset(self) -> None:
        self._zero()

    def counters(self) -> dict[str, int]:
        counts = self.submissions.values()
        return {
            "batches_created": self.batches_created,
            "batch_lines_received": sum(counts),
            "batch_lines_served": self.lines_served,
            "batch_lines_resubmitted": sum(n - 1 for n in counts),
            "batch_max_submissions": max(counts, default=0),
            "batch_max_open": self.max_open,
        }

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/files", _answering(self.upload))
        r.add_get("/v1/files/{id}", _answering(self.file_info))
        r.add_get("/v1/files/{id}/content", _answering(self.file_content))
        r.add_delete("/v1/files/{id}", _answering(self.delete_file))
        r.add_post("/v1/batches", _answering(self.create))
        r.add_get("/v1/batches", _answering(self.list))
        r.add_get("/v1/batches/{id}", _answering(self.retrieve))
        r.add_post("/v1/batches/{id}/cancel", _answering(self.cancel))
        r.add_get("/stats/batch-submissions", self.submissions_handler)

    # -- files -----------------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{self._prefix}{next(self._ids):08d}"

    def _store(self, filename: str, purpose: str, data: bytes) -> _File:
        item = _File(self._new_id("file"), filename, purpose, data, int(time.time()))
        self._files[item.id] = item
        return item

    @staticmethod
    def _file_body(item: _File) -> dict[str, Any]:
        return {
            "id": item.id,
            "object": "file",
            "bytes": len(item.data),
            "created_at": item.created_at,
            "filename": item.filename,
            "purpose": item.purpose,
            "status": "processed",
        }

    async def upload(self, request: web.Request) -> web.Response:
        self._require_api()
        form = await request.post()
        purpose = form.get("purpose")
        upload = form.get("file")
        if not isinstance(purpose, str) or not isinstance(upload, web.FileField):
            raise _error(400, "a multipart body with 'purpose' and 'file' is required")
        data = upload.file.read()
        return _json(self._file_body(self._store(upload.filename, purpose, data)))

    def _file(self, request: web.Request) -> _File:
        item = self._files.get(request.match_info["id"])
        if item is None:
            raise _error(404, f"no file {request.match_info['id']!r}", "not_found")
        return item

    async def file_info(self, request: web.Request) -> web.Response:
        return _json(self._file_body(self._file(request)))

    async def file_content(self, request: web.Request) -> web.Response:
        return web.Response(body=self._file(request).data, content_type="application/jsonl")

    async def delete_file(self, request: web.Request) -> web.Response:
        item = self._file(request)
        del self._files[item.id]
        return _json({"id": item.id, "object": "file", "deleted": True})

    # -- batches ---------------------------------------------------------------------------

    def _require_api(self) -> None:
        if not self._sim.config.batch_api:
            raise _error(404, "this server has no Batch API (simulated)", "not_found")

    async def create(self, request: web.Request) -> web.Response:
        self._require_api()
        try:
            body = _decoder.decode(await request.read())
        except msgspec.DecodeError:
            raise _error(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise _error(400, "the body must be a JSON object")
        source = self._files.get(str(body.get("input_file_id")))
        if source is None:
            raise _error(400, f"no input file {body.get('input_file_id')!r}")
        self.batches_created += 1
        batch = _Batch(self._new_id("batch"), self.batches_created, source.id, body)
        self._batches[batch.id] = batch
        self._validate(batch, source.data)
        return _json(batch.body())

    def _validate(self, batch: _Batch, data: bytes) -> None:
        """Read the input file; a batch whose file is bad (or that the config makes fail)
        is `failed` with its errors, and none of its lines is run (nor counted)."""
        seen: set[str] = set()
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = _line_decoder.decode(raw)
            except msgspec.DecodeError as exc:
                batch.errors.append(_line_error("invalid_json", str(exc), number))
                continue
            if not line.custom_id or line.custom_id in seen:
                batch.errors.append(_line_error("duplicate_custom_id", "bad custom_id", number))
            elif line.url != batch.endpoint:
                batch.errors.append(_line_error("invalid_url", f"url {line.url!r}", number))
            seen.add(line.custom_id)
            batch.lines.append(line)
        if batch.number in self._sim.config.batch_fail_validation:
            batch.errors.append(_line_error("invalid_request", "validation failed (simulated)"))
        if batch.endpoint != COMPLETIONS:
            batch.errors.append(_line_error("invalid_endpoint", f"endpoint {batch.endpoint!r}"))
        if batch.errors or not batch.lines:
            batch.errors = batch.errors or [_line_error("empty_file", "no requests")]
            self._finish(batch, "failed")
            return
        for line in batch.lines:
            self.submissions[line.custom_id] = self.submissions.get(line.custom_id, 0) + 1
        still_open = sum(b.status not in _TERMINAL for b in self._batches.values())
        self.max_open = max(self.max_open, still_open)

    async def retrieve(self, request: web.Request) -> web.Response:
        self._require_api()
        batch = self._batch(request)
        if batch.status not in _TERMINAL:
            self._advance(batch)
        return _json(batch.body())

    def _advance(self, batch: _Batch) -> None:
        config = self._sim.config
        batch.polls += 1
        if batch.status == "cancelling":
            self._run_lines(batch, self._share_done(batch), "cancelled")
        elif batch.polls <= config.batch_polls:
            batch.status = "in_progress"
            batch.times.setdefault("in_progress", int(time.time()))
        elif batch.polls <= config.batch_polls + config.batch_finalizing_polls:
            batch.status = "finalizing"
            batch.times.setdefault("finalizing", int(time.time()))
        elif batch.number in config.batch_expire:
            self._run_lines(batch, int(len(batch.lines) * config.batch_expire_share), "expired")
        else:
            self._run_lines(batch, len(batch.lines), "completed")

    def _share_done(self, batch: _Batch) -> int:
        """Lines processed by now: a share growing with the in-progress polls."""
        polls = self._sim.config.batch_polls
        if polls == 0:
            return 0
        return len(batch.lines) * min(max(batch.polls - 1, 0), polls) // polls

    def _run_lines(self, batch: _Batch, count: int, status: str) -> None:
        """Answer the first `count` lines; the rest are reported as not run (expired or
        cancelled, in the error file, as OpenAI does)."""
        output: list[bytes] = []
        errors: list[bytes] = []
        for index, line in enumerate(batch.lines):
            if index >= count:
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                errors.append(_error_line(line.custom_id, None, code))
                continue
            status_code, body = self._answer(line)
            if status_code == 200:
                output.append(_output_line(line.custom_id, status_code, body))
                batch.completed += 1
                self.lines_served += 1
            else:
                errors.append(_output_line(line.custom_id, status_code, body))
                batch.failed += 1
        if output:
            batch.output_file_id = self._store(
                f"{batch.id}_output.jsonl", "batch_output", b"".join(output)
            ).id
        if errors:
            batch.error_file_id = self._store(
                f"{batch.id}_error.jsonl", "batch_output", b"".join(errors)
            ).id
        self._finish(batch, status)

    def _answer(self, line: _Line) -> tuple[int, bytes]:
        """(HTTP status, body) of one line, as `/v1/chat/completions` would answer it."""
        config = self._sim.config
        draw = _draw(config.seed, line.custom_id, self.submissions.get(line.custom_id, 0))
        if draw < config.batch_line_error_rate:
            return 500, bodies.SERVER_ERROR
        if draw < config.batch_line_error_rate + config.batch_line_permanent_rate:
            return 400, bodies.error_body(
                "invalid request (simulated)", "invalid_request_error", "invalid_value"
            )
        return self._sim.complete_line(bytes(line.body))

    def _finish(self, batch: _Batch, status: str) -> None:
        batch.status = status
        batch.times[status] = int(time.time())

    async def list(self, request: web.Request) -> web.Response:
        self._require_api()
        limit = max(1, min(100, int(request.query.get("limit", "20"))))
        ordered = list(reversed(self._batches.values()))  # newest first, as OpenAI lists them
        after = request.query.get("after")
        if after is not None:
            ids = [b.id for b in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        page = ordered[:limit]
        return _json(
            {
                "object": "list",
                "data": [b.body() for b in page],
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(ordered) > limit,
            }
        )

    async def cancel(self, request: web.Request) -> web.Response:
        self._require_api()
        batch = self._batch(request)
        if batch.status not in _TERMINAL:
            batch.status = "cancelling"
            batch.times.setdefault("cancelling", int(time.time()))
        return _json(batch.body())

    def _batch(self, request: web.Request) -> _Batch:
        batch = self._batches.get(request.match_info["id"])
        if batch is None:
            raise _error(404, f"no batch {request.match_info['id']!r}", "not_found")
        return batch

    async def submissions_handler(self, _request: web.Request) -> web.Response:
        return _json(dict(sorted(self.submissions.items())))


def _draw(seed: int, custom_id: str, submission: int) -> float:
    """A uniform draw in [0, 1) fixed by (seed, custom_id, submission)."""
    digest = hashlib.blake2b(f"{seed}:{custom_id}:{submission}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _line_error(code: str, message: str, line: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, "param": None}


def _output_line(custom_id: str, status: int, body: bytes) -> bytes:
    request_id = f"req_{hashlib.blake2b(body, digest_size=8).hexdigest()}"
    head = _encoder.encode({"id": f"batch_req_{request_id}", "custom_id": custom_id})
    return (
        head[:-1]
        + b',"response":{"status_code":'
        + str(status).encode()
        + b',"request_id":"'
        + request_id.encode()
        + b'","body":'
        + body
        + b'},"error":null}\n'
    )


def _error_line(custom_id: str, _status: int | None, code: str) -> bytes:
    message = "this request was not run before the batch ended"
    line = {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    return _encoder.encode(line) + b"\n"


def _json(value: Any) -> web.Response:
    return web.Response(body=_encoder.encode(value), content_type=bodies.JSON)


class _Refused(Exception):
    """An error answer (4xx with an OpenAI error body), raised anywhere in a handler."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.response = web.Response(status=status, body=body, content_type=bodies.JSON)


def _error(status: int, message: str, code: str = "invalid_request") -> _Refused:
    return _Refused(status, bodies.error_body(message, "invalid_request_error", code))


_Handler = Callable[[web.Request], Awaitable[web.Response]]


def _answering(handler: _Handler) -> _Handler:
    async def handle(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except _Refused as refused:
            return refused.response

    return handle
