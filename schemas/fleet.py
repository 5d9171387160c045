"""The workers of a run shared through one database (`python -m engine worker`)."""

from __future__ import annotations

import msgspec


class WorkerRow(msgspec.Struct, frozen=True, gc=False):
    """One worker process as the run's database knows it (times: wall-clock seconds)."""

    id: str  # host:pid:token, stamped on the jobs it holds
    host: str
    pid: int
    concurrency: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    jobs_done: int  # jobs it finished (done or failed)
