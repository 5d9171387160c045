"""The simulator's Batch API through the openai SDK (workers.batch_api), on loopback."""

from __future__ import annotations

import json

import aiohttp
import pytest

from engine.batch.lines import input_line
from engine.inputs import canonical_body
from workers.batch_api import BatchApi, BatchApiError, BatchApiMissing
from workers.sim.app import SimConfig, start_simulator


def _body(i: int) -> bytes:
    return canonical_body(
        {"model": "sim-small", "messages": [{"role": "user", "content": f"q{i}?"}], "max_tokens": 8}
    )


def _file(n: int, first: int = 0) -> bytes:
    return b"".join(input_line(f"c{i}", _body(i)) for i in range(first, first + n))


async def test_a_batch_runs_by_polls_and_answers_as_online() -> None:
    config = SimConfig(batch_polls=2, batch_finalizing_polls=1)
    async with await start_simulator(config) as sim:
        api = BatchApi(sim.base_url, "sk-test")
        try:
            await api.probe()
            file_id = await api.upload("b1.jsonl", _file(3))
            batch = await api.create(file_id, {"run": "test"})
            assert batch.status == "validating"
            assert batch.metadata == {"run": "test"}
            seen = [(await api.retrieve(batch.id)).status for _ in range(4)]
            assert seen == ["in_progress", "in_progress", "finalizing", "completed"]
            done = await api.retrieve(batch.id)
            assert done.request_counts is not None
            assert done.request_counts.completed == 3
            assert done.output_file_id is not None
            output = [
                json.loads(line) for line in (await api.content(done.output_file_id)).splitlines()
            ]
            url = f"{sim.base_url}/chat/completions"
            async with aiohttp.ClientSession() as session, session.post(url, data=_body(1)) as r:
                online = await r.json()
            by_id = {line["custom_id"]: line["response"]["body"] for line in output}
            assert by_id["c1"]["choices"] == online["choices"]
            assert by_id["c1"]["usage"] == online["usage"]
            assert (await api.find_by_input_file(file_id)) is not None
            await api.delete(file_id)
            with pytest.raises(BatchApiError, match="no file"):
                await api.content(file_id)
        finally:
            await api.close()
        stats = sim.stats()
    assert stats["batches_created"] == 1
    assert stats["batch_lines_served"] == 3
    assert stats["requests_received"] == 1  # the online comparison only


async def test_listing_pages_through_every_batch() -> None:
    async with await start_simulator(SimConfig()) as sim:
        api = BatchApi(sim.base_url, "sk-test")
        try:
            first = await api.upload("a.jsonl", _file(1))
            await api.create(first, {})
            for i in range(120):  # more than one page of 100
                await api.create(await api.upload(f"{i}.jsonl", _file(1, i + 1)), {})
            found = await api.find_by_input_file(first)  # the oldest: on the second page
            assert found is not None
            assert found.input_file_id == first
        finally:
            await api.close()


async def test_cancel_reports_unrun_lines_in_the_error_file() -> None:
    async with await start_simulator(SimConfig(batch_polls=4)) as sim:
        api = BatchApi(sim.base_url, "sk-test")
        try:
            batch = await api.create(await api.upload("c.jsonl", _file(8)), {})
            await api.retrieve(batch.id)
            await api.retrieve(batch.id)  # each poll after the first runs a quarter of the lines
            assert (await api.cancel(batch.id)).status == "cancelling"
            ended = await api.retrieve(batch.id)
            assert ended.status == "cancelled"
            assert ended.output_file_id is not None
            assert ended.error_file_id is not None
            output = (await api.content(ended.output_file_id)).splitlines()
            errors = [json.loads(x) for x in (await api.content(ended.error_file_id)).splitlines()]
        finally:
            await api.close()
    assert len(output) == 4  # polls 2 and 3 (the one that finds it cancelled): two quarters
    assert len(errors) == 4
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}


async def test_bad_input_file_fails_validation_naming_the_line() -> None:
    async with await start_simulator(SimConfig()) as sim:
        api = BatchApi(sim.base_url, "sk-test")
        try:
            data = input_line("same", _body(1)) + input_line("same", _body(2))
            batch = await api.create(await api.upload("d.jsonl", data), {})
        finally:
            await api.close()
        stats = sim.stats()
    assert batch.status == "failed"
    assert batch.errors is not None
    assert [e.line for e in batch.errors.data or []] == [2]
    assert stats["batch_lines_received"] == 0  # a refused batch runs nothing


async def test_a_provider_without_the_batch_api() -> None:
    async with await start_simulator(SimConfig(batch_api=False)) as sim:
        api = BatchApi(sim.base_url, "sk-test")
        try:
            with pytest.raises(BatchApiMissing, match=sim.base_url):
                await api.probe()
        finally:
            await api.close()
