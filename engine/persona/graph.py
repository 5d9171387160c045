"""The PERSONA job graph: answer → critique → revise, as queue jobs with parents.

    answer:{prompt}                 one per distinct prompt drawn, no persona (shared)
    critique:{persona}:{prompt}     waits for answer:{prompt}
    revise:{persona}:{prompt}       waits for critique:{persona}:{prompt}

A waiting job has no payload. In the same transaction that commits a parent's result, the
queue makes its children runnable; when a child is claimed, `PersonaGraph.build_requests`
builds its request (template + persona + prompt + the parents' committed outputs, read through
the queue). A crash between stages loses nothing. A child of a parent that failed for good
stays waiting (its pair is not exported; the parent's error is in errors.jsonl).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

import msgspec

from engine.inputs import canonical_body, estimate_tokens, fingerprint
from engine.persona import templates
from engine.persona.sampling import Pair
from engine.queue import WorkQueue
from schemas.job import ClaimedJob, NewJob, TerminalRow
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

    # -- children's requests, built when they are claimed ---------------------------------

    async def build_requests(self, queue: WorkQueue, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Write the request of each claimed child from its parents' committed results.

        Requests of children are built when claimed, not stored: they embed the persona and
        the parents' outputs, and storing 634,400 of them would more than double the queue's
        size and its write load. They are deterministic, so a rebuilt request is the same.
        One read of the queue per claimed batch (the answers, shared by many personas, are
        kept in memory once read).
        """
        children = [job for job in jobs if not job.payload]
        if not children:
            return jobs
        parents = await queue.done_rows(sorted(self._parents_to_read(children)))
        for job_id, row in parents.items():
            if job_id.startswith("answer:"):
                self._answers[job_id.removeprefix("answer:")] = completion_text(_result(row))
        return [job if job.payload else self._child(job, parents) for job in jobs]

    def _parents_to_read(self, children: list[ClaimedJob]) -> set[str]:
        wanted: set[str] = set()
        for job in children:
            _, persona_id, prompt_id = job.id.split(":")
            if prompt_id not in self._answers:
                wanted.add(f"answer:{prompt_id}")
            if job.stage == "revise":
                wanted.add(f"critique:{persona_id}:{prompt_id}")
        return wanted

    def _child(self, job: ClaimedJob, parents: dict[str, TerminalRow]) -> ClaimedJob:
        _, persona_id, prompt_id = job.id.split(":")
        answer = self._answers.get(prompt_id)
        if answer is None:
            raise LookupError(f"answer:{prompt_id} has no committed result")
        if job.stage == "critique":
            payload, fp, est = self.critique_request(persona_id, prompt_id, answer)
        else:
            critique_id = f"critique:{persona_id}:{prompt_id}"
            row = parents.get(critique_id)
            if row is None:
                raise LookupError(f"{critique_id} has no committed result")
            critique = templates.parse_critique(completion_text(_result(row)))
            payload, fp, est = self.revise_request(prompt_id, answer, critique)
        return msgspec.structs.replace(job, payload=payload, fingerprint=fp, est_tokens=est)

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


def _result(row: TerminalRow) -> bytes:
    if row.result is None:
        raise LookupError(f"{row.id} has no committed result")
    return row.result
