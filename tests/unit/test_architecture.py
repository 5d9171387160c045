"""The seams hold: the engine core loads nothing of PERSONA, and only storage backends know SQL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

CORE_PACKAGES = ("engine", "workers", "ratelimits", "schemas")
DOMAIN = "engine.persona"
DOMAINS = (
    DOMAIN,
    "engine.evaluation",
    "engine.study",
)  # domain packages: the core imports none of them
BACKENDS = {Path("engine/queue/sqlite.py"), Path("engine/queue/postgres.py")}
STUDY_STORE = Path("engine/study/store.py")  # the study's answers file, not a queue backend
_SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|CREATE\s+TABLE|PRAGMA\s)")


def _modules() -> list[str]:
    names = []
    for package in CORE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            if module.startswith(DOMAINS) or module.endswith("__main__"):
                continue
            names.append(module)
    return names


def test_core_modules_import_nothing_of_persona() -> None:
    modules = _modules()
    assert "engine.generate" in modules
    assert "engine.queue.sqlite" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({DOMAINS!r}))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"core modules loaded: {result.stdout.split()}"


def test_only_storage_backends_know_sql() -> None:
    offenders = []
    for package in (*CORE_PACKAGES, "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative in BACKENDS or relative == STUDY_STORE:
                continue
            text = path.read_text()
            if re.search(r"^\s*(import|from)\s+(sqlite3|aiosqlite|asyncpg|psycopg)", text, re.M):
                offenders.append(f"{relative}: imports a database driver")
            if _SQL.search(text):
                offenders.append(f"{relative}: contains SQL")
    assert offenders == []


def test_the_check_above_can_see_sql() -> None:
    assert _SQL.search((ROOT / "engine/queue/sqlite.py").read_text())


def test_a_run_loads_pyarrow_only_to_export_parquet() -> None:
    """pyarrow adds ~50 MB to a process: the PERSONA pipeline and the run loop go without it."""
    code = (
        "import sys\n"
        "import engine.generate, engine.persona.pipeline, engine.persona.export\n"
        "print('pyarrow' in sys.modules)\n"
        "import engine.persona.parquet\n"
        "print('pyarrow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True"]
