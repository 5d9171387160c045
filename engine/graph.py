"""The PERSONA job graph: answer → critique → revise, as queue jobs with parents.

    answer:{prompt}                 one per distinct prompt drawn, no persona (shared)
    critique:{persona}:{prompt}     waits for answer:{prompt}
    revise:{persona}:{prompt}       waits for critique:{persona}:{prompt}

A waiting job has no payload yet. In the same transaction that commits a parent's result,
`PersonaGraph.expand` writes each child's request (template + persona + prompt + parent
outputs) and makes it runnable: a crash between stages loses nothing. A child of a parent
that failed for good stays waiting (its pair is not exported; the parent's error is in
errors.jsonl).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import msgspec

from engine import templates
from engine.inputs import canonical_body, estimate_tokens, fingerprint
from engine.sampling import Pair
from schemas.job import ClaimedJob, Done, NewJob
from schemas.openai import ChatMessage, ChatRequest, chat_response_decoder
from schemas.persona import Persona
from schemas.prompt import Prompt
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

    def jobs(self, pairs: Iterable[Pair]) -> Iterator[NewJob]:
        """Every job of the graph: answers first (one per distinct prompt), then per pair."""
        pairs = list(pairs)
        c = self.config
        for prompt_id in dict.fromkeys(p.prompt_id for p in pairs):
            yield self.answer_job(prompt_id)
        for p in pairs:
            key = f"{p.persona_id}:{p.prompt_id}"
            yield NewJob(f"critique:{key}", "", b"", "critique", 0, c.critique_model, 0,
                         parent_id=f"answer:{p.prompt_id}")  # fmt: skip
            yield NewJob(f"revise:{key}", "", b"", "revise", 0, c.revise_model, 0,
                         parent_id=f"critique:{key}")  # fmt: skip

    # -- expansion (runs in the queue's thread, inside the commit transaction) ---------------

    def expand(self, db: sqlite3.Connection, done: Sequence[Done]) -> None:
        updates: list[tuple[bytes, str, int, int]] = []
        for outcome in done:
            stage, _, key = outcome.job_id.partition(":")
            if stage == "answer":
                updates += self._critiques_for(db, outcome, key)
            elif stage == "critique":
                updates += self._revise_for(db, outcome, key)
        if updates:
            db.executemany(
                "UPDATE jobs SET payload = ?, fingerprint = ?, est_tokens = ?, status = 'queued' "
                "WHERE seq = ? AND status = 'waiting'",
                updates,
            )

    def _critiques_for(
        self, db: sqlite3.Connection, answer: Done, prompt_id: str
    ) -> list[tuple[bytes, str, int, int]]:
        text = completion_text(answer.body)
        rows = db.execute(
            "SELECT seq, id FROM jobs WHERE parent_id = ? AND status = 'waiting'",
            (answer.job_id,),
        ).fetchall()
        updates = []
        for seq, job_id in rows:
            persona_id = job_id.split(":")[1]
            updates.append((*self.critique_request(persona_id, prompt_id, text), seq))
        return updates

    def _revise_for(
        self, db: sqlite3.Connection, critique: Done, key: str
    ) -> list[tuple[bytes, str, int, int]]:
        prompt_id = key.split(":")[1]
        row = db.execute(
            "SELECT result FROM jobs WHERE id = ? AND status = 'done'", (f"answer:{prompt_id}",)
        ).fetchone()
        child = db.execute(
            "SELECT seq FROM jobs WHERE id = ? AND status = 'waiting'", (f"revise:{key}",)
        ).fetchone()
        if row is None or child is None:
            return []
        critique_text = templates.parse_critique(completion_text(critique.body))
        payload = self.revise_request(prompt_id, completion_text(row[0]), critique_text)
        return [(*payload, child[0])]

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


def graph_texts(
    personas: Sequence[Persona], prompts: Sequence[Prompt]
) -> tuple[dict[str, str], dict[str, str]]:
    return {p.id: p.text for p in personas}, {q.id: q.text for q in prompts}
