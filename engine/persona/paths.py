"""The shipped PERSONA data files' paths (a module with no imports: the CLI names defaults
cheaply). The files sit in the engine's package data directory, beside the price table."""

from __future__ import annotations

from pathlib import Path
from typing import Final

DATA_DIR: Final = Path(__file__).resolve().parent.parent / "data"
DEFAULT_PERSONAS_PATH: Final = DATA_DIR / "personas.jsonl"
DEFAULT_PROMPTS_PATH: Final = DATA_DIR / "prompts.jsonl"
