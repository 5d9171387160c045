"""Issue 16's pure parts: flags, refused replies, the rerun command, storage errors, messages."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from engine import command_line
from engine.errors import StorageError
from engine.queue import failure_codes
from engine.storage import space_warning, storage_error_in
from engine.systematic import Halt, Signature, halt_line
from schemas.job import ErrorInfo
from tests.unit.test_config import _generate
from workers.client import parse_response
from workers.errors import ContentRefused


def test_retry_failed_and_stop_after_same_errors_flags() -> None:
    assert _generate().retry_failed is None
    assert _generate().run.stop_after_same_errors == 10
    assert _generate("--retry-failed").retry_failed == ()
    assert _generate("--retry-failed=400,invalid_api_key").retry_failed == (
        "400",
        "invalid_api_key",
    )
    assert _generate("--stop-after-same-errors", "0").run.stop_after_same_errors == 0
    with pytest.raises(SystemExit):
        _generate("--stop-after-same-errors", "-1")
    with pytest.raises(SystemExit):
        _generate("--retry-failed=,")


def _completion(*choices: dict[str, object]) -> bytes:
    return json.dumps({"id": "c", "choices": list(choices), "usage": {}}).encode()


def test_a_filtered_or_refused_reply_is_a_permanent_error_with_its_reason() -> None:
    filtered = {"index": 0, "message": {"role": "assistant"}, "finish_reason": "content_filter"}
    refused = {
        "index": 1,
        "message": {"role": "assistant", "refusal": "I can't help with that."},
        "finish_reason": "stop",
    }
    usable = {
        "index": 2,
        "message": {"role": "assistant", "content": "hi"},
        "finish_reason": "stop",
    }
    with pytest.raises(ContentRefused, match="content_filter") as caught:
        parse_response(200, {}, _completion(filtered), 1.0)
    codes = failure_codes(
        json.dumps(
            {"kind": "ContentRefused", "message": "", "status_code": 200, "body": caught.value.body}
        ).encode()
    )
    assert {"ContentRefused", "200", "content_filter"} <= codes
    with pytest.raises(ContentRefused, match="refused"):
        parse_response(200, {}, _completion(refused), 1.0)
    # one usable choice: a result as usual
    assert parse_response(200, {}, _completion(filtered, usable), 1.0).status_code == 200


def test_the_rerun_command_drops_retry_failed_and_url_credentials() -> None:
    command_line.record(
        ["generate", "--requests", "in file.jsonl", "--retry-failed", "400",
         "--base-url", "https://user:secret@example.com/v1", "--retry-failed=404"]
    )  # fmt: skip
    try:
        command = command_line.rerun_command()
    finally:
        command_line._recorded.clear()
    assert command == (
        "python -m engine generate --requests 'in file.jsonl' --base-url https://example.com/v1"
    )
    assert command_line.rerun_command() is None


def test_storage_errors_are_found_inside_exception_groups(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    found = storage_error_in(ExceptionGroup("tasks", [ValueError("x"), full]), tmp_path)
    assert isinstance(found, StorageError)
    assert found.path == tmp_path
    assert "no space left on device" in str(found)
    assert found.exit_status == 5
    read_only = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "f"))
    error = storage_error_in(read_only, tmp_path)
    assert error is not None
    assert "make it writable" in str(error)
    assert error.path == tmp_path / "f"
    assert storage_error_in(OSError(errno.ECONNRESET, "reset"), tmp_path) is None


def test_the_space_check_warns_only_when_the_persona_run_does_not_fit(tmp_path: Path) -> None:
    assert space_warning("persona", 10, tmp_path, None) is None
    warning = space_warning("persona", 10**12, tmp_path, tmp_path / "c" / "cache.sqlite")
    assert warning is not None
    assert str(tmp_path) in warning
    assert "exit 5" in warning
    assert space_warning("requests", 10**12, tmp_path, None) is None  # size not known


@pytest.mark.parametrize(
    ("status", "code", "check"),
    [
        (401, "invalid_api_key", "check MY_KEY / --api-key-env"),
        (400, "auth_error", "check MY_KEY / --api-key-env"),
        (403, "", "may use model m"),
        (404, "model_not_found", "check the model name 'm'"),
        (400, "invalid_value", "the server says: bad value"),
    ],
)
def test_the_halt_line_says_what_to_check(status: int, code: str, check: str) -> None:
    halt = Halt(Signature(status, code), "answer", "m", "bad value", 10)
    line = halt_line(halt, "https://api.example/v1", "MY_KEY", 12)
    assert line.startswith("stopped: every call of stage answer (model m) is rejected with ")
    assert f"HTTP {status}" in line
    assert check in line
    assert "https://api.example/v1" in line
    assert "nothing was marked failed" in line


def test_failure_codes_of_a_provider_error() -> None:
    body = json.dumps({"error": {"code": "model_not_found", "type": "invalid_request_error"}})
    info = ErrorInfo("PermanentError", "HTTP 404", 404, body)
    error = json.dumps({"kind": info.kind, "message": "", "status_code": 404, "body": body})
    assert failure_codes(error.encode()) == {
        "PermanentError", "404", "model_not_found", "invalid_request_error"
    }  # fmt: skip
    assert failure_codes(None) == frozenset()
    assert failure_codes(b"not json") == frozenset()
