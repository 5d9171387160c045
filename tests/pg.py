"""A real PostgreSQL server for the tests: a fresh database per test session.

`PERSONA_TESTBED_TEST_PG` names the server's admin URL (a database from which others can be
created, e.g. postgresql://postgres@127.0.0.1:5432/postgres). Set (as CI does), the PostgreSQL
tests must run: a missing server fails them. Unset, the default local server is tried, and
the tests are skipped with the reason when none answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ENV = "PERSONA_TESTBED_TEST_PG"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> tuple[str, bool]:
    """(the admin URL, whether the tests must run)."""
    given = os.environ.get(ENV)
    return (given, True) if given else (DEFAULT_ADMIN_URL, False)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def run_sync(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to the end from sync code, even from inside a running event loop (a
    fixture asked for by an async test): in a thread of its own."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(lambda: asyncio.run(make())).result()


def admin_sql(url: str, sql: str) -> None:
    run_sync(lambda: _admin(url, sql))


async def _admin(url: str, sql: str) -> None:
    db = await asyncpg.connect(url, timeout=10)
    try:
        await db.execute(sql)
    finally:
        await db.close()


def server_problem(url: str) -> str | None:
    """Why the server at `url` cannot be used (None: it answers)."""
    try:
        admin_sql(url, "SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def create_database(admin: str) -> str:
    name = f"persona_testbed_{secrets.token_hex(6)}"
    admin_sql(admin, f'CREATE DATABASE "{name}"')
    return with_database(admin, name)


def drop_database(admin: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    url = create_database(admin)
    try:
        yield url
    finally:
        drop_database(admin, url)


def reset_schema(url: str) -> None:
    """An empty database again (the engine creates its schema on the next open)."""
    admin_sql(url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")


def fetchval(url: str, sql: str) -> Any:
    """One value read with a connection of its own (from sync test code)."""

    async def read() -> Any:
        db = await asyncpg.connect(url, timeout=10)
        try:
            return await db.fetchval(sql)
        finally:
            await db.close()

    return run_sync(read)
