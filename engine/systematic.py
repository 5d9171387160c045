"""Systematic failures: when every call of a stage and model is rejected the same way, stop.

A wrong API key, a revoked one, a mistyped model name or a proxy that refuses every request
answers each call with the same permanent error. Failing job after job would mark the whole
run failed in seconds (issue 16); instead the run stops after `limit` of them and puts those
jobs back in the queue, nothing marked failed, and says what to check.

Per key (stage, model), a permanent 4xx failure is *held* (not committed) while it may be
systematic:

    account errors   401, 403, 404 or an auth code     held unless a call of the key
                     (the key, its access, the model)   succeeded since (a key revoked or a
                                                        model withdrawn mid-run stops too)
    request errors   400, 422, other 4xx               held only while no call of the key has
                                                        ever succeeded (in this process, or as
                                                        a DONE job of its stage and model in
                                                        the queue): once one has, a 400 is
                                                        that request's own fault

`limit` held failures with the same (status, error code) halt the run: every held job goes
back to the queue (`Released`, no attempt spent). A success of the key lets its held failures
through as failed (they were that request's fault); so does the end of a run that nothing
halted. A job held when the run stops for another reason (a signal) goes back to the queue.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from schemas.job import ClaimedJob, Done, ErrorInfo, Failed, Outcome, Released

#: the provider's codes that name the key or the account, whatever the status (a proxy may
#: answer a wrong key with a 400)
AUTH_CODES = frozenset(
    {
        "invalid_api_key",
        "authentication_error",
        "auth_error",
        "permission_denied",
        "permission_error",
        "insufficient_quota",
        "account_deactivated",
        "billing_not_active",
        "model_not_found",
    }
)
ACCOUNT_STATUSES = frozenset({401, 403, 404})
_any_decoder = msgspec.json.Decoder()

Key = tuple[str, str]  # (stage, model)


class Signature(msgspec.Struct, frozen=True):
    """How a call was rejected: HTTP status and the provider's error code (or type)."""

    status: int
    code: str

    @property
    def account(self) -> bool:
        return self.status in ACCOUNT_STATUSES or self.code in AUTH_CODES


class Halt(msgspec.Struct, frozen=True):
    """Why the run stopped: the rejection, where, and the provider's message (excerpt)."""

    signature: Signature
    stage: str
    model: str
    message: str
    calls: int  # rejections with this signature that made it halt


def provider_detail(error: ErrorInfo) -> tuple[str, str]:
    """(error code or type, message) from the provider's error body ("" when it has none)."""
    try:
        body = _any_decoder.decode(error.body) if error.body else None
    except msgspec.DecodeError:
        body = None
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return "", ""
    code = detail.get("code") or detail.get("type") or ""
    message = detail.get("message") or ""
    return str(code), str(message)


def signature_of(error: ErrorInfo) -> Signature | None:
    """The signature of a permanent 4xx rejection (None: any other failure)."""
    status = error.status_code
    if error.kind != "PermanentError" or status is None or not 400 <= status < 500:
        return None
    return Signature(status, provider_detail(error)[0])


class SystematicFailures:
    """Holds permanent failures that may be systematic, and decides when they are."""

    def __init__(self, limit: int, proven: Callable[[str, str], bool] | None = None) -> None:
        self.limit = limit  # 0: never halt
        self._proven_before = proven or (lambda _stage, _model: False)
        self._succeeded: set[Key] = set()
        self._held: dict[Key, list[Failed]] = {}
        self._held_seqs: set[int] = set()
        self.halt: Halt | None = None
        self.released = 0  # jobs put back in the queue instead of failed

    @property
    def held_seqs(self) -> frozenset[int]:
        return frozenset(self._held_seqs)

    def observe(self, job: ClaimedJob, outcome: Outcome) -> list[Outcome]:
        """The outcomes to commit now for `outcome` of `job` (none: it is held)."""
        key = (job.stage, job.model)
        if isinstance(outcome, Done):
            if outcome.cached:
                return [outcome]
            self._succeeded.add(key)
            return [outcome, *self._let_through(key)]
        signature = self._suspect(key, outcome)
        if signature is None or not isinstance(outcome, Failed):
            return [outcome]
        if self.halt is not None:
            self.released += 1
            return [Released(outcome.seq)]  # in flight when the run halted
        return self._hold(key, outcome, signature)

    def _suspect(self, key: Key, outcome: Outcome) -> Signature | None:
        """The signature of a failure that may be systematic (None: decide as usual)."""
        if self.limit <= 0 or not isinstance(outcome, Failed):
            return None
        signature = signature_of(outcome.error)
        if signature is None or not self._holdable(key, signature):
            return None
        return signature

    def _hold(self, key: Key, outcome: Failed, signature: Signature) -> list[Outcome]:
        held = self._held.setdefault(key, [])
        held.append(outcome)
        self._held_seqs.add(outcome.seq)
        same = [f for f in held if signature_of(f.error) == signature]
        if len(same) < self.limit:
            return []
        _, message = provider_detail(outcome.error)
        self.halt = Halt(signature, key[0], key[1], message[:200], len(same))
        return self.release_all(as_failed=False)

    def release_all(self, as_failed: bool) -> list[Outcome]:
        """Every held failure: as failed (the run ended without a halt) or back to the
        queue (halted or stopped)."""
        held = [f for failures in self._held.values() for f in failures]
        self._held.clear()
        self._held_seqs.clear()
        if as_failed:
            return list(held)
        self.released += len(held)
        return [Released(f.seq) for f in held]

    def _holdable(self, key: Key, signature: Signature) -> bool:
        if signature.account:
            return True  # held until a call of the key succeeds (which lets them through)
        return key not in self._succeeded and not self._proven_before(*key)

    def _let_through(self, key: Key) -> list[Outcome]:
        """A call of `key` succeeded: its held failures were those requests' own."""
        failures = self._held.pop(key, [])
        for failure in failures:
            self._held_seqs.discard(failure.seq)
        return list(failures)


def halt_line(halt: Halt, base_url: str, api_key_env: str, released: int) -> str:
    """The one line that says what stopped the run and what to check."""
    sig = halt.signature
    code = f" {sig.code}" if sig.code else ""
    if sig.status == 401 or sig.code in AUTH_CODES - {"model_not_found"}:
        check = f"check {api_key_env} / --api-key-env"
    elif sig.status == 403:
        check = f"check that the key in {api_key_env} may use model {halt.model}"
    elif sig.status == 404 or sig.code == "model_not_found":
        check = f"check the model name {halt.model!r} and --base-url"
    else:
        said = f" (the server says: {halt.message})" if halt.message else ""
        check = (
            f"check the requests of this stage and model{said}, or give "
            "--stop-after-same-errors 0 to fail them instead"
        )
    return (
        f"stopped: every call of stage {halt.stage} (model {halt.model}) is rejected with "
        f"HTTP {sig.status}{code} by {base_url}; {check}; nothing was marked failed "
        f"(the {released} jobs rejected are back in the queue); fix it and run again: what is "
        "done is kept"
    )
