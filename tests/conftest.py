from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from engine.rundir import CACHE_ENV


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every engine subprocess it starts) gets its own response cache."""
    path = tmp_path / "cache" / "cache.sqlite"
    monkeypatch.setenv(CACHE_ENV, str(path))
    return path


_HYPOTHESIS_HOME = pytest.StashKey[tempfile.TemporaryDirectory[str]]()


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis keeps its files in a temporary directory, not in `.hypothesis/` here."""
    home = config.stash[_HYPOTHESIS_HOME] = tempfile.TemporaryDirectory(prefix="hypothesis-")
    set_hypothesis_home_dir(home.name)


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_HYPOTHESIS_HOME, None)
    if home is not None:
        home.cleanup()


@pytest.fixture(scope="session")
def pg_admin() -> str:
    """The PostgreSQL admin URL; skips (unset PERSONA_TESTBED_TEST_PG and no local server) or
    fails (set, and the server does not answer)."""
    from tests import pg  # noqa: PLC0415 (asyncpg only for tests that use PostgreSQL)

    url, required = pg.admin_url()
    problem = pg.server_problem(url)
    if problem is not None:
        if required:
            pytest.fail(f"{pg.ENV} is set but PostgreSQL does not answer: {problem}")
        pytest.skip(f"no PostgreSQL server at {url} ({problem}); set {pg.ENV} to require one")
    return url


@pytest.fixture(scope="session")
def pg_database(pg_admin: str) -> Iterator[str]:
    """A database created for this test session (dropped at its end)."""
    from tests import pg  # noqa: PLC0415

    with pg.fresh_database(pg_admin) as url:
        yield url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's database, emptied: each test starts with no schema."""
    from tests import pg  # noqa: PLC0415

    pg.reset_schema(pg_database)
    return pg_database
