from __future__ import annotations

from pathlib import Path

import pytest

from engine.rundir import CACHE_ENV


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every engine subprocess it starts) gets its own response cache."""
    path = tmp_path / "cache" / "cache.sqlite"
    monkeypatch.setenv(CACHE_ENV, str(path))
    return path
