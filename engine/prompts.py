"""`python -m engine.prompts build|check`, kept as it was documented: the PERSONA prompt set
now lives in `engine.persona.prompts` (this module only forwards to it)."""

from __future__ import annotations

import runpy

if __name__ == "__main__":
    runpy.run_module("engine.persona.prompts", run_name="__main__", alter_sys=True)
