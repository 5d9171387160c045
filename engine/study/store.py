"""The study folder's SQLite file, `study.sqlite`: the design (settings, items, seats and their
tokens) written once by `study create`, and the answers, each committed before the rater's page
moves on. The only module of the study that knows SQL.

An answer is keyed by (seat, position): a second submit of the same item replaces the first and
counts it in `submits`, never adds a row. The instructions the raters read are frozen into the
file with the first answer (they are editable in `instructions.md` until then).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import msgspec

from engine.errors import InputError
from engine.evaluation.verify import Item

DB_NAME = "study.sqlite"
SCHEMA_VERSION = "1"
Choice = Literal["A", "B", "cant_tell"]
CHOICES: tuple[Choice, ...] = ("A", "B", "cant_tell")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    persona_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    item_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    PRIMARY KEY (persona_id, position)
);
CREATE TABLE seats (
    seat_id TEXT PRIMARY KEY,
    persona_id TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE
);
CREATE TABLE answers (
    seat_id TEXT NOT NULL REFERENCES seats (seat_id),
    position INTEGER NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'cant_tell')),
    justification TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    submits INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (seat_id, position)
);
"""
_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000")
_UPSERT = """
INSERT INTO answers (seat_id, position, choice, justification, answered_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (seat_id, position) DO UPDATE SET
    choice = excluded.choice,
    justification = excluded.justification,
    answered_at = excluded.answered_at,
    submits = answers.submits + 1
RETURNING seat_id, position, choice, justification, answered_at, submits
"""
_ANSWER_COLUMNS = "seat_id, position, choice, justification, answered_at, submits"
INSTRUCTIONS_KEY = "instructions_in_force"


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source: str  # the run directory the pairs came from
    pairs_digest: str  # sha256 of its pairs.jsonl
    seed: int
    personas: int
    questions: int
    raters_per_persona: int
    created_at: str


class Seat(msgspec.Struct, frozen=True):
    seat_id: str
    persona_id: str
    token: str


class Answer(msgspec.Struct, frozen=True):
    seat_id: str
    position: int
    choice: Choice
    justification: str
    answered_at: str
    submits: int = 1


class Study(msgspec.Struct):
    settings: Settings
    organiser_token: str
    seats: list[Seat]
    items: dict[str, list[Item]]  # persona id -> its items, in the order raters see them
    instructions_in_force: str | None = None  # frozen with the first answer


_item_decoder = msgspec.json.Decoder(Item)
_settings_decoder = msgspec.json.Decoder(Settings)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in _PRAGMAS:
        connection.execute(pragma)
    return connection


def write_new(folder: Path, study: Study) -> None:
    """A new study file in `folder` (which must not hold one), in one transaction."""
    connection = _connect(folder / DB_NAME)
    try:
        connection.executescript(_SCHEMA)
        connection.execute("BEGIN")
        meta = {
            "schema_version": SCHEMA_VERSION,
            "settings": msgspec.json.encode(study.settings).decode(),
            "organiser_token": study.organiser_token,
        }
        connection.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        connection.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            (
                (persona_id, position, item.id, msgspec.json.encode(item))
                for persona_id, items in study.items.items()
                for position, item in enumerate(items)
            ),
        )
        connection.executemany(
            "INSERT INTO seats VALUES (?, ?, ?)",
            ((s.seat_id, s.persona_id, s.token) for s in study.seats),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


def _open_existing(folder: Path) -> sqlite3.Connection:
    path = folder / DB_NAME
    if not path.is_file():
        raise InputError(path, None, "not a study folder (no study.sqlite): run `study create`")
    connection = _connect(path)
    try:
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise InputError(path, None, f"not a study file: {exc}") from None
    if row is None or row[0] != SCHEMA_VERSION:
        connection.close()
        raise InputError(path, None, f"study file version {row and row[0]!r}, expected 1")
    return connection


def load(folder: Path) -> Study:
    """The study's design (and the instructions in force, once the study has started)."""
    connection = _open_existing(folder)
    try:
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        items: dict[str, list[Item]] = {}
        for persona_id, body in connection.execute(
            "SELECT persona_id, body FROM items ORDER BY rowid"
        ):
            items.setdefault(persona_id, []).append(_item_decoder.decode(body))
        seats = [
            Seat(*row) for row in connection.execute("SELECT seat_id, persona_id, token FROM seats")
        ]
    finally:
        connection.close()
    return Study(
        _settings_decoder.decode(meta["settings"]),
        meta["organiser_token"],
        seats,
        items,
        meta.get(INSTRUCTIONS_KEY),
    )


def _answer(row: Sequence[Any]) -> Answer:
    return Answer(*row)  # the columns in `_ANSWER_COLUMNS`' order; the CHECK keeps `choice` valid


def read_answers(folder: Path) -> list[Answer]:
    """Every answer, by seat and position (a consistent snapshot while the server writes)."""
    connection = _open_existing(folder)
    try:
        rows = connection.execute(
            f"SELECT {_ANSWER_COLUMNS} FROM answers ORDER BY seat_id, position"
        ).fetchall()
    finally:
        connection.close()
    return [_answer(row) for row in rows]


class AnswerStore:
    """The server's one connection; writes are serialised so each is its own transaction."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, folder: Path) -> AnswerStore:
        _open_existing(folder).close()  # the same checks as the commands that read it
        connection = await aiosqlite.connect(folder / DB_NAME, isolation_level=None)
        for pragma in _PRAGMAS:
            await connection.execute(pragma)
        return cls(connection)

    async def close(self) -> None:
        await self._db.close()

    async def of_seat(self, seat_id: str) -> dict[int, Answer]:
        async with self._db.execute(
            f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE seat_id = ?", (seat_id,)
        ) as cursor:
            return {row[1]: _answer(row) async for row in cursor}

    async def all(self) -> list[Answer]:
        async with self._db.execute(
            f"SELECT {_ANSWER_COLUMNS} FROM answers ORDER BY seat_id, position"
        ) as cursor:
            return [_answer(row) async for row in cursor]

    async def save(
        self, seat_id: str, position: int, choice: Choice, justification: str, instructions: str
    ) -> tuple[Answer, str]:
        """Commit one answer (replacing an earlier one of the same item) and freeze the
        instructions if this is the study's first answer; returns the answer and the
        instructions in force. Returns only once the commit is durable."""
        async with self._write:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await self._db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    (INSTRUCTIONS_KEY, instructions),
                )
                async with self._db.execute(
                    _UPSERT, (seat_id, position, choice, justification, now())
                ) as cursor:
                    row = await cursor.fetchone()
                async with self._db.execute(
                    "SELECT value FROM meta WHERE key = ?", (INSTRUCTIONS_KEY,)
                ) as cursor:
                    frozen = await cursor.fetchone()
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
        assert row is not None
        assert frozen is not None
        return _answer(row), str(frozen[0])
