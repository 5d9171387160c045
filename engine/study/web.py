"""`study serve`: the raters' pages and the organiser's page, server-side rendered.

    python -m engine study serve STUDY [--port 8080] [--host 127.0.0.1]

    GET  /r/{token}[?item=N]   a rater's page: the persona, one item (the first unanswered, or
                               item N), the progress; when all are answered, a summary
    POST /r/{token}/{N}        one answer (choice, justification); committed to study.sqlite,
                               then 303 to the rater's page: a reload never resubmits
    GET  /o/{token}            the organiser's page: completion per rater and per persona
    GET  /o/{token}/{file}     the export files (`human.jsonl`, `.unresolved.jsonl`,
                               `.raters.jsonl`), as `study export` writes them
    GET  /static/…             the stylesheet and the keyboard script (shipped, no CDN)

Every model text is escaped by jinja2's autoescape (on for every template); the pages forbid
inline scripts and styles (Content-Security-Policy), so a text that slipped through still could
not run. A token opens one seat: an unknown token, a rater's token on the organiser's path or
the organiser's on a rater's, an item outside the seat: 404, the same answer for all. Request
bodies are limited (`MAX_BODY_BYTES`); links are secrets, so nothing logs a URL.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import jinja2
import structlog
from aiohttp import web

from engine.errors import InputError
from engine.evaluation.verify import Item
from engine.study import design, store, tally
from workers.loops import on_stop_signals

MAX_BODY_BYTES = 64 * 1024  # a justification is a sentence; 413 beyond this
MAX_JUSTIFICATION = 2000  # characters
HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the URL holds the token
    "X-Frame-Options": "DENY",
}
CHOICE_TEXT = {"A": "A", "B": "B", "cant_tell": "Can't tell"}

log = structlog.get_logger("engine.study")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: all text is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    return env


def when(iso: str) -> str:
    """A stored UTC time (`2026-12-01T02:59:14+00:00`) as `2026-12-01 02:59:14`."""
    return iso.replace("T", " ").removesuffix("+00:00")


def persona_rows(text: str) -> list[tuple[str, str]]:
    """The persona's `attribute: value` lines as pairs (a line without one: ("", line))."""
    rows = []
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        rows.append((name, value) if sep else ("", line))
    return rows


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if p.strip()]


class StudyServer:
    def __init__(self, folder: Path, study: store.Study, answers: store.AnswerStore) -> None:
        self.folder = folder
        self.study = study
        self.answers = answers
        self.seats = {seat.token: seat for seat in study.seats}
        self.env = _environment()
        self._instructions = self._read_instructions()

    # -- what the pages show ------------------------------------------------------------

    def _read_instructions(self) -> str:
        path = self.folder / design.INSTRUCTIONS_FILE
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(path, None, f"cannot read the instructions: {exc}") from None

    def instructions(self) -> str:
        """The text in force: frozen with the first answer; until then the file as it is."""
        if self.study.instructions_in_force is not None:
            return self.study.instructions_in_force
        try:
            self._instructions = self._read_instructions()
        except InputError as exc:  # keep the last good text rather than fail a rater's page
            log.warning("study.instructions_unreadable", error=str(exc))
        return self._instructions

    def render(self, name: str, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(name).render(**context)
        response = web.Response(text=html, status=status, content_type="text/html")
        response.headers["Cache-Control"] = "no-store"
        return response

    def seat_of(self, request: web.Request) -> store.Seat:
        seat = self.seats.get(request.match_info["token"])
        if seat is None:
            raise web.HTTPNotFound()
        return seat

    def items_of(self, seat: store.Seat) -> list[Item]:
        return self.study.items[seat.persona_id]

    def _position(self, seat: store.Seat, text: str) -> int:
        """A 1-based item number of the seat's items as a position; 404 otherwise."""
        if not text.isdigit() or not 1 <= int(text) <= len(self.items_of(seat)):
            raise web.HTTPNotFound()
        return int(text) - 1

    def _item_page(
        self,
        seat: store.Seat,
        answers: Mapping[int, store.Answer],
        position: int,
        *,
        choice: str | None = None,
        justification: str | None = None,
        error: str | None = None,
    ) -> web.Response:
        items = self.items_of(seat)
        previous = answers.get(position)
        if previous is not None:  # revisiting an answered item: what was saved, unless retyped
            choice = previous.choice if choice is None else choice
            justification = previous.justification if justification is None else justification
        return self.render(
            "item.html",
            status=422 if error else 200,
            seat=seat,
            item=items[position],
            number=position + 1,
            total=len(items),
            answered=len(answers),
            done=[p in answers for p in range(len(items))],
            persona=persona_rows(items[0].persona),
            instructions=paragraphs(self.instructions()),
            choice=choice,
            justification=justification or "",
            error=error,
            max_justification=MAX_JUSTIFICATION,
            choices=CHOICE_TEXT,
        )

    # -- handlers -----------------------------------------------------------------------

    async def rater_page(self, request: web.Request) -> web.Response:
        seat = self.seat_of(request)
        answers = await self.answers.of_seat(seat.seat_id)
        items = self.items_of(seat)
        if "item" in request.query:
            return self._item_page(seat, answers, self._position(seat, request.query["item"]))
        pending = [p for p in range(len(items)) if p not in answers]
        if pending:
            return self._item_page(seat, answers, pending[0])
        summary = [(n + 1, item, answers[n]) for n, item in enumerate(items)]
        return self.render(
            "done.html",
            seat=seat,
            total=len(items),
            summary=summary,
            persona=persona_rows(items[0].persona),
            choices=CHOICE_TEXT,
        )

    async def submit(self, request: web.Request) -> web.Response:
        seat = self.seat_of(request)
        position = self._position(seat, request.match_info["number"])
        form = await request.post()
        choice = form.get("choice")
        raw = form.get("justification")
        justification = raw.strip() if isinstance(raw, str) else ""
        error = None
        if not isinstance(choice, str) or choice not in CHOICE_TEXT:
            error = "Choose A, B or Can't tell."
        elif not justification:
            error = "Say why in a sentence."
        elif len(justification) > MAX_JUSTIFICATION:
            error = f"Keep the justification under {MAX_JUSTIFICATION} characters."
        if error is not None:
            answers = await self.answers.of_seat(seat.seat_id)
            shown = choice if isinstance(choice, str) and choice in CHOICE_TEXT else None
            return self._item_page(
                seat, answers, position, choice=shown, justification=justification, error=error
            )
        answer, frozen = await self.answers.save(
            seat.seat_id, position, cast(store.Choice, choice), justification, self.instructions()
        )
        self.study.instructions_in_force = frozen
        log.info("study.answer", seat=seat.seat_id, item=position + 1, submits=answer.submits)
        raise web.HTTPSeeOther(design.rater_path(seat.token))

    def check_organiser(self, request: web.Request) -> None:
        given = request.match_info["token"].encode()
        if not hmac.compare_digest(given, self.study.organiser_token.encode()):
            raise web.HTTPNotFound()

    async def organiser_page(self, request: web.Request) -> web.Response:
        self.check_organiser(request)
        answers = await self.answers.all()
        counted = tally.tally(self.study, answers)
        by_seat: dict[str, list[store.Answer]] = {}
        for answer in answers:
            by_seat.setdefault(answer.seat_id, []).append(answer)
        seats = [
            (
                seat,
                len(by_seat.get(seat.seat_id, [])),
                max((a.answered_at for a in by_seat.get(seat.seat_id, [])), default=""),
            )
            for seat in self.study.seats
        ]
        questions = self.study.settings.questions
        personas = []
        for persona_id, items in self.study.items.items():
            mine = [n for seat, n, _ in seats if seat.persona_id == persona_id]
            covered = sum(counted.votes.get(i.id, tally.Votes()).total == len(mine) for i in items)
            personas.append((persona_id, sum(n == questions for n in mine), len(mine), covered))
        file_out = self.folder / design.INSTRUCTIONS_FILE
        try:
            edited = self.study.instructions_in_force not in (None, file_out.read_text())
        except (OSError, UnicodeDecodeError):
            edited = True
        return self.render(
            "organiser.html",
            token=self.study.organiser_token,
            settings=self.study.settings,
            seats=seats,
            personas=personas,
            answers=len(answers),
            expected=len(self.study.seats) * questions,
            complete=sum(n == questions for _, n, _ in seats),
            summary=tally.summary(counted),
            started=self.study.instructions_in_force is not None,
            edited=edited,
            exports=[p.name for p in tally.export_paths(Path("human.jsonl"))],
        )

    async def export_file(self, request: web.Request) -> web.Response:
        self.check_organiser(request)
        names = dict(
            zip(
                (p.name for p in tally.export_paths(Path("human.jsonl"))),
                ("majority", "unresolved", "raters"),
                strict=True,
            )
        )
        part = names.get(request.match_info["name"])
        if part is None:
            raise web.HTTPNotFound()
        counted = tally.tally(self.study, await self.answers.all())
        lines = tally.encode_lines(getattr(counted, part))
        return web.Response(
            body=b"".join(line + b"\n" for line in lines),
            content_type="application/jsonl",
            headers={
                "Content-Disposition": f'attachment; filename="{request.match_info["name"]}"',
                "Cache-Control": "no-store",
            },
        )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)


STUDY_KEY = web.AppKey("study", StudyServer)


def create_app(server: StudyServer) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STUDY_KEY] = server
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/r/{token}", server.rater_page)
    app.router.add_post("/r/{token}/{number}", server.submit)
    app.router.add_get("/o/{token}", server.organiser_page)
    app.router.add_get("/o/{token}/{name}", server.export_file)
    app.router.add_static("/static/", HERE / "static")
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_lines(host: str, port: int, folder: Path, organiser_token: str) -> list[str]:
    url_host = f"[{host}]" if ":" in host else host
    base = f"http://{url_host}:{port}"
    if is_loopback(host):
        reach = "loopback only: other machines cannot reach it; --host to serve a network"
    else:
        reach = (
            f"bound to {host}: anyone who can reach this address and holds a link can answer; "
            "plain HTTP, so put it behind HTTPS on a network you do not trust"
        )
    return [
        f"study listening on {base} ({reach})",
        f"organiser page: {base}{design.organiser_path(organiser_token)}",
        f"rater links: {folder / design.LINKS_FILE} (paths under {base})",
    ]


async def serve(folder: Path, host: str, port: int, say: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM; `say` gets the listening lines (the first names the
    address, with the port actually bound when `port` is 0)."""
    study = store.load(folder)
    answers = await store.AnswerStore.open(folder)
    try:
        server = StudyServer(folder, study, answers)
        runner = web.AppRunner(create_app(server), access_log=None)  # URLs hold tokens
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            bound = int(runner.addresses[0][1])
            for line in listening_lines(host, bound, folder, study.organiser_token):
                say(line)
            log.info("study.serving", host=host, port=bound, seats=len(study.seats))
            await _until_signalled()
        finally:
            await runner.cleanup()
    finally:
        await answers.close()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    with on_stop_signals(lambda _: stop.set()):
        await stop.wait()
