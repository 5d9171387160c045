"""The PERSONA job graph: answer → critique → revise, as queue jobs with parents.

    answer:{prompt}                 one per distinct prompt drawn, no persona (shared)
    critique:{persona}:{prompt}     waits for answer:{prompt}
    revise:{persona}:{prompt}       waits for critique:{persona}:{prompt}

A waiting job has no payload. In the same transaction that commits a parent's result,
`PersonaGraph.expand` makes its children runnable; when a child is claimed,
`PersonaGraph.materialize` builds its request (template + persona + prompt + the parents'
committed outputs). A crash between stages loses nothing. A child of a parent
that failed for good stays waiting (its pair is not exported; the parent's error is in
errors.jsonl).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence

import msgspec

from engine.inputs import canonical_body, estimate_tokens, fingerprint
from engine.persona import templates
from engine.persona.sampling import Pair
from schemas.job import ClaimedJob, Done, NewJob
from schemas.openai import ChatMessage, ChatRequest, chat_response_decoder
from workers.client import CallResult
from workers.errors import InvalidOutput

STAGES = ("answer", "critique", "revise")


class GraphConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What decides the requests (part of the run's identity: see `signature`)."""

    answer_model: str = "sim-small"
    critique_model: str = "sim-small"
    revise_model: str = "sim-small"
    temperature: float = 0.7
    answer_max_tokens: int = 512
    critique_max_tokens: int = 512
    revise_max_tokens: int = 512


def completion_text(body: bytes) -> str:
    response = chat_response_decoder.decode(body)
    return response.choices[0].message.content or ""


class PersonaGraph:
    """Builds the graph's jobs and expands parents into children (texts held in memory)."""

    def __init__(
        self, config: GraphConfig, personas: dict[str, str], prompts: dict[str, str]
    ) -> None:
        self.config = config
        self._personas = personas  # id → rendered persona text
        self._prompts = prompts  # id → question
        self._answers: dict[str, str] = {}  # prompt id → answer text, filled as claimed

    # -- requests --------------------------------------------------------------------------

    def _request(
        self, model: str, max_tokens: int, system: str, user: str
    ) -> tuple[bytes, str, int]:
        body = {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": max_tokens,
            "temperature": self.config.temperature,
        }
        payload = canonical_body(body)
        request = ChatRequest(
            model=model,
            messages=[ChatMessage("system", system), ChatMessage("user", user)],
            max_tokens=max_tokens,
        )
        return payload, fingerprint(payload), estimate_tokens(request)

    def answer_job(self, prompt_id: str) -> NewJob:
        c = self.config
        payload, fp, est = self._request(
            c.answer_model, c.answer_max_tokens, templates.ANSWER_SYSTEM, self._prompts[prompt_id]
        )
        return NewJob(f"answer:{prompt_id}", fp, payload, "answer", 0, c.answer_model, est)

    def critique_request(
        self, persona_id: str, prompt_id: str, answer: str
    ) -> tuple[bytes, str, int]:
        c = self.config
        user = templates.CRITIQUE_USER.format(
            persona=self._personas[persona_id], question=self._prompts[prompt_id], answer=answer
        )
        return self._request(
            c.critique_model, c.critique_max_tokens, templates.CRITIQUE_SYSTEM, user
        )

    def revise_request(self, prompt_id: str, answer: str, critique: str) -> tuple[bytes, str, int]:
        c = self.config
        user = templates.REVISE_USER.format(
            question=self._prompts[prompt_id], answer=answer, critique=critique
        )
        return self._request(c.revise_model, c.revise_max_tokens, templates.REVISE_SYSTEM, user)

    def jobs(self, pairs: Collection[Pair]) -> Iterator[NewJob]:
        """Every job of the graph: the answers (one per distinct prompt), then the critiques,
        then the revisions, children in their parents' order: the rows an answer's commit
        makes runnable are neighbours in the table, so the flip touches few pages."""
        prompt_order = {q: i for i, q in enumerate(dict.fromkeys(p.prompt_id for p in pairs))}
        ordered = sorted(pairs, key=lambda p: prompt_order[p.prompt_id])
        c = self.config
        for prompt_id in prompt_order:
            yield self.answer_job(prompt_id)
        for p in ordered:
            yield NewJob(f"critique:{p.persona_id}:{p.prompt_id}", "", b"", "critique", 0,
                         c.critique_model, 0, parent_id=f"answer:{p.prompt_id}")  # fmt: skip
        for p in ordered:
            key = f"{p.persona_id}:{p.prompt_id}"
            yield NewJob(f"revise:{key}", "", b"", "revise", 0, c.revise_model, 0,
                         parent_id=f"critique:{key}")  # fmt: skip

    # -- in the queue's thread: expansion (inside a commit), materialisation (inside a claim) --

    def expand(self, db: sqlite3.Connection, done: Sequence[Done]) -> None:
        """A parent is done: its children become runnable (a flag flip, no payload written)."""
        parents = [(o.job_id,) for o in done if not o.job_id.startswith("revise:")]
        if parents:
            db.executemany(
                "UPDATE jobs SET status = 'queued' WHERE parent_id = ? AND status = 'waiting'",
                parents,
            )

    def materialize(self, db: sqlite3.Connection, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Write the request of each claimed child from its parents' committed results.

        Requests of children are built when claimed, not stored: they embed the persona and
        the parents' outputs, and storing 634,400 of them would more than double the queue's
        size and its write load. They are deterministic, so a rebuilt request is the same.
        """
        out = []
        for job in jobs:
            if job.payload:
                out.append(job)
                continue
            _, persona_id, prompt_id = job.id.split(":")
            answer = self._answer_text(db, prompt_id)
            if job.stage == "critique":
                payload, fp, est = self.critique_request(persona_id, prompt_id, answer)
            else:
                critique = templates.parse_critique(
                    completion_text(_result(db, f"critique:{persona_id}:{prompt_id}"))
                )
                payload, fp, est = self.revise_request(prompt_id, answer, critique)
            out.append(
                msgspec.structs.replace(job, payload=payload, fingerprint=fp, est_tokens=est)
            )
        return out

    def _answer_text(self, db: sqlite3.Connection, prompt_id: str) -> str:
        text = self._answers.get(prompt_id)
        if text is None:
            text = completion_text(_result(db, f"answer:{prompt_id}"))
            self._answers[prompt_id] = text
        return text

    # -- output checks (the dispatcher's validator) ---------------------------------------

    @staticmethod
    def validate(job: ClaimedJob, result: CallResult) -> None:
        """Raise InvalidOutput (retryable) for an empty answer or missing markers."""
        text = completion_text(result.body)
        try:
            if job.stage == "critique":
                templates.parse_critique(text)
            elif job.stage == "revise":
                templates.parse_revision(text)
            elif not text.strip():
                raise templates.MissingMarkers("empty answer")
        except templates.MissingMarkers as exc:
            raise InvalidOutput(str(exc), status_code=200, body=text[:4000]) from None


def _result(db: sqlite3.Connection, job_id: str) -> bytes:
    row = db.execute(
        "SELECT result FROM jobs WHERE id = ? AND status = 'done'", (job_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"{job_id} has no committed result")
    result: bytes = row[0]
    return result
