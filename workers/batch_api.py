"""The Batch API's HTTP calls (`/v1/files`, `/v1/batches`) through the openai SDK.

The SDK does the multipart upload and the list pagination; these calls are few (a handful per
batch of up to 50,000 requests), so its CPU cost does not matter here as it does on the online
hot path. Its own retries are on for the idempotent calls and off for batch creation: a create
retried by the SDK after a lost answer could start the same requests twice. A create whose
answer is lost is found again by its input file id (`find_by_input_file`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import openai
from openai.types import Batch

#: retries of the SDK for reads, uploads, cancels (safe to repeat)
SAFE_RETRIES = 3
COMPLETIONS: Final = "/v1/chat/completions"


class BatchApiMissing(Exception):
    """The provider answers 404 on /v1/batches: it has no Batch API."""

    def __init__(self, base_url: str) -> None:
        super().__init__(
            f"{base_url} has no Batch API (GET /v1/batches answered 404); use --api online"
        )
        self.base_url = base_url


class BatchApiError(Exception):
    """A files or batches call failed (after the SDK's retries where they are safe)."""


class BatchApi:
    def __init__(self, base_url: str, api_key: str, timeout_s: float = 600.0) -> None:
        self.base_url = base_url
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, max_retries=SAFE_RETRIES, timeout=timeout_s
        )
        self._once = self._client.with_options(max_retries=0)

    async def close(self) -> None:
        await self._client.close()

    async def probe(self) -> None:
        """Raise BatchApiMissing when the provider has no /v1/batches."""
        try:
            await self._client.batches.list(limit=1)
        except openai.NotFoundError:
            raise BatchApiMissing(self.base_url) from None
        except openai.OpenAIError as exc:
            raise BatchApiError(f"GET /v1/batches: {exc}") from None

    async def upload(self, filename: str, data: bytes) -> str:
        """POST /v1/files (purpose=batch); the new file's id."""
        try:
            created = await self._client.files.create(
                file=(filename, data, "application/jsonl"), purpose="batch"
            )
        except openai.OpenAIError as exc:
            raise BatchApiError(f"POST /v1/files: {exc}") from None
        return created.id

    async def create(self, input_file_id: str, metadata: Mapping[str, str]) -> Batch:
        """POST /v1/batches, once (no automatic retry: see the module's docstring)."""
        try:
            return await self._once.batches.create(
                input_file_id=input_file_id,
                endpoint=COMPLETIONS,
                completion_window="24h",
                metadata=dict(metadata),
            )
        except openai.OpenAIError as exc:
            raise BatchApiError(f"POST /v1/batches: {exc}") from None

    async def retrieve(self, batch_id: str) -> Batch:
        try:
            return await self._client.batches.retrieve(batch_id)
        except openai.OpenAIError as exc:
            raise BatchApiError(f"GET /v1/batches/{batch_id}: {exc}") from None

    async def cancel(self, batch_id: str) -> Batch:
        try:
            return await self._client.batches.cancel(batch_id)
        except openai.OpenAIError as exc:
            raise BatchApiError(f"POST /v1/batches/{batch_id}/cancel: {exc}") from None

    async def find_by_input_file(self, input_file_id: str) -> Batch | None:
        """The batch created from this input file, if any (newest first, every page)."""
        try:
            async for batch in self._client.batches.list(limit=100):
                if batch.input_file_id == input_file_id:
                    return batch
        except openai.OpenAIError as exc:
            raise BatchApiError(f"GET /v1/batches: {exc}") from None
        return None

    async def content(self, file_id: str) -> bytes:
        """GET /v1/files/{id}/content."""
        try:
            response = await self._client.files.content(file_id)
        except openai.OpenAIError as exc:
            raise BatchApiError(f"GET /v1/files/{file_id}/content: {exc}") from None
        return response.content

    async def delete(self, file_id: str) -> None:
        """DELETE /v1/files/{id}; a file already gone is fine."""
        try:
            await self._client.files.delete(file_id)
        except openai.NotFoundError:
            return
        except openai.OpenAIError as exc:
            raise BatchApiError(f"DELETE /v1/files/{file_id}: {exc}") from None


def request_counts(batch: Batch) -> dict[str, Any]:
    counts = batch.request_counts
    if counts is None:
        return {"total": 0, "completed": 0, "failed": 0}
    return {"total": counts.total, "completed": counts.completed, "failed": counts.failed}
