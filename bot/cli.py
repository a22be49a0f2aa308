"""`mcu`: the command line of the МЦУ assistant."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pydantic import ValidationError

from bot.settings import Settings
from handlers.org import Organisation, OrgFileError, load_organisation
from handlers.rules.deadlines import Kind, compute_deadlines

if TYPE_CHECKING:
    from handlers.context import Services

T = TypeVar("T")

NO_TOKEN = (
    "mcu: no messenger token is set. Set MCU_TELEGRAM_TOKEN, or MCU_VK_TOKEN together with "
    "MCU_VK_GROUP_ID (in the environment or in .env; see .env.example). "
    "/ Не задан токен мессенджера: укажите MCU_TELEGRAM_TOKEN или MCU_VK_TOKEN и "
    "MCU_VK_GROUP_ID (переменные окружения или файл .env, образец — .env.example)."
)


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """Usage errors are one clear line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def command_group(commands: Any, name: str, help: str) -> Any:
    """`mcu NAME …`: a command with subcommands of its own (`args.NAME_command`)."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True, parser_class=Parser)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"MCU_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"mcu: configuration error: {problems}") from exc


def load_org(settings: Settings, path: Path | None = None) -> Organisation:
    try:
        return load_organisation(path or settings.org_file)
    except OrgFileError as exc:
        raise UsageError(f"mcu: organisation file error: {exc}") from exc


def parse_moment(value: str, settings: Settings, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"mcu: {name} {value!r} is not an ISO 8601 time, "
                         "e.g. 2026-11-27T19:30 or 2026-11-27T19:30+11:00") from exc
    # A time without an offset is local МЦУ time: that is what an operator on the phone means.
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.tz)


# ---------------------------------------------------------------------------------------------
# Commands

def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    print(f"database is up to date: {_safe_url(settings.database_url)}")
    return 0


def settings_to_send() -> Settings | None:
    """Settings of a process that talks to the messengers, with the schema brought up to
    date; None (after saying why) when no messenger token is set."""
    from storage.migrate import upgrade

    settings = load_settings()
    load_org(settings)
    if not (settings.telegram_enabled or settings.vk_enabled):
        print(NO_TOKEN, file=sys.stderr)
        return None
    upgrade(settings.database_url)
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from bot.bootstrap import build_app, serve

    settings = settings_to_send()
    if settings is None:
        return 2

    async def main() -> None:
        await serve(build_app(settings))

    asyncio.run(main())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.serve import ServeError, check_settings, serve_webhooks
    from storage.migrate import upgrade

    settings = load_settings()
    load_org(settings)
    try:
        check_settings(settings)
    except ServeError as exc:
        raise UsageError(str(exc)) from exc
    upgrade(settings.database_url)
    try:
        asyncio.run(serve_webhooks(settings, port=args.port))
    except ServeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


def cmd_org_check(args: argparse.Namespace) -> int:
    settings = load_settings()
    path = Path(args.file) if args.file else settings.org_file
    org = load_org(settings, path)
    print(f"{path}: OK — {len(org.blocks)} blocks, {len(org.topics)} topics, "
          f"{len(org.sections)} sections")
    return 0


def cmd_org_show(args: argparse.Namespace) -> int:
    from handlers.org import Role

    settings = load_settings()
    org = load_org(settings, Path(args.file) if args.file else None)
    roles = {role: getattr(org.roles, role).position
             for role in ("curator", "chairman", "im_coordinator", "press")}
    roles["head"] = "Руководитель отраслевого блока"
    roles["executor"] = "Ответственный исполнитель"
    roles["operator"] = "Оператор МЦУ"
    if args.json:
        print(json.dumps({
            "roles": [{"id": str(Role(r)), "position": p} for r, p in roles.items()],
            "blocks": [{"id": b.id, "title": b.title, "head": b.head, "topics": b.topics}
                       for b in org.blocks],
            "topics": [{"id": t.id, "title": t.title,
                        "block": org.block_of_topic[t.id].id} for t in org.topics],
        }, ensure_ascii=False, indent=2))
        return 0
    print(org.name)
    print("\nРоли (roles):")
    for role, position in roles.items():
        print(f"  {role:<15} {position}")
    print("\nБлоки (blocks):")
    for block in org.blocks:
        print(f"  {block.id:<20} {block.title}")
        print(f"  {'':<20} руководитель: {block.head}")
        print(f"  {'':<20} тематики: {', '.join(block.topics) or '—'}")
    print("\nТематики (topics):")
    for topic in org.topics:
        print(f"  {topic.id:<20} {topic.title}  → {org.block_of_topic[topic.id].id}")
    return 0


def cmd_deadlines(args: argparse.Namespace) -> int:
    settings = load_settings()
    org = load_org(settings)
    try:
        kind = Kind(args.kind)
    except ValueError as exc:
        raise UsageError(f"mcu deadlines: unknown kind {args.kind!r}; "
                         "use message, incident or appeal") from exc
    if args.topic is not None and args.topic not in org.topic_by_id:
        raise UsageError(f"mcu deadlines: unknown topic {args.topic!r}; "
                         f"see `mcu org show` for the ids")
    received = parse_moment(args.received, settings, "--received")
    registered = (parse_moment(args.registered, settings, "--registered")
                  if args.registered else None)
    if registered is not None and registered < received:
        raise UsageError("mcu deadlines: --registered is earlier than --received")
    calendar = org.work_calendar(settings.tz)
    deadlines = compute_deadlines(kind, org.policy(kind, args.topic), calendar,
                                  received, registered)
    print(json.dumps(deadlines.as_dict(), ensure_ascii=False))
    return 0


def _open(settings: Settings):  # type: ignore[no-untyped-def]
    from storage.db import create_engine, session_factory
    from storage.migrate import upgrade

    upgrade(settings.database_url)
    engine = create_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
    return engine, session_factory(engine, tz=settings.tz)


def cmd_staff_invite(args: argparse.Namespace) -> int:
    from handlers.clock import SystemClock
    from handlers.staff.invites import InviteError, create_invite

    settings = load_settings()
    org = load_org(settings)
    now = SystemClock().now()

    async def create() -> tuple[str, datetime]:
        engine, sessions = _open(settings)
        try:
            async with sessions() as session, session.begin():
                invite = await create_invite(session, org, args.role, args.block, args.name, now)
                return invite.code, invite.expires_at
        finally:
            await engine.dispose()

    try:
        code, expires = asyncio.run(create())
    except InviteError as exc:
        messages = {"unknown_role": f"unknown role {args.role!r}",
                    "block_required": "--block is required for head and executor",
                    "unknown_block": f"unknown block {args.block!r} (see `mcu org show`)",
                    "block_not_allowed": "--block is only for head and executor"}
        raise UsageError(f"mcu staff invite: {messages.get(exc.reason, exc.reason)}") from exc
    from bot.bootstrap import telegram_username
    from bot.platforms import telegram_with_username

    username = telegram_username(settings)
    link = telegram_with_username(username or "<имя_бота>").start_link(code)
    if not username:
        link = f"{link}  (set MCU_TELEGRAM_BOT_USERNAME to print it)"
    print(f"Код приглашения / invitation code: {code}")
    print(f"Действует до / valid until: {expires.astimezone(settings.tz):%d.%m.%Y %H:%M} "
          f"({settings.timezone}), один раз / once")
    print(f"Telegram: {link}")
    print(f"ВКонтакте / VK: напишите сообществу сообщение «/start {code}»")
    return 0


def cmd_staff_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from storage.models import Account, Staff

    settings = load_settings()

    async def rows() -> list[tuple[Staff, list[str]]]:
        engine, sessions = _open(settings)
        try:
            async with sessions() as session:
                result = []
                for staff in (await session.scalars(select(Staff).order_by(Staff.id))).all():
                    accounts = (await session.scalars(
                        select(Account.platform).where(Account.staff_id == staff.id))).all()
                    result.append((staff, list(accounts)))
                return result
        finally:
            await engine.dispose()

    listing = asyncio.run(rows())
    if not listing:
        print("нет сотрудников / no staff yet: mcu staff invite --role … ")
        return 0
    print(f"{'id':>4}  {'role':<15} {'block':<20} {'messengers':<14} {'status':<8} name")
    for staff, platforms in listing:
        status = "revoked" if staff.revoked_at else "active"
        print(f"{staff.id:>4}  {staff.role:<15} {staff.block_id or '—':<20} "
              f"{','.join(platforms) or '—':<14} {status:<8} {staff.name or ''}")
    return 0


def cmd_staff_revoke(args: argparse.Namespace) -> int:
    from handlers.clock import SystemClock
    from handlers.staff.invites import revoke_staff

    settings = load_settings()

    async def revoke() -> bool:
        engine, sessions = _open(settings)
        try:
            async with sessions() as session, session.begin():
                return await revoke_staff(session, args.id, SystemClock().now())
        finally:
            await engine.dispose()

    if not asyncio.run(revoke()):
        raise UsageError(f"mcu staff revoke: no active staff member with id {args.id}")
    print(f"staff member {args.id}: access revoked")
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from bot.bootstrap import serve_scheduler
    from storage.migrate import upgrade

    settings = load_settings()
    load_org(settings)
    upgrade(settings.database_url)
    asyncio.run(serve_scheduler(settings))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from bot.worker import serve_worker

    settings = settings_to_send()
    if settings is None:
        return 2
    asyncio.run(serve_worker(settings))
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from handlers.clock import SystemClock
    from scheduler.jobs import JOBS
    from scheduler.outbox import outbox_counts
    from scheduler.runner import triggers

    settings = load_settings()
    org = load_org(settings)
    now = SystemClock().now().astimezone(settings.tz)
    for name, trigger in triggers(settings.tz, org.summaries).items():
        next_run = trigger.get_next_fire_time(None, now)
        print(f"{name:<16} next run {next_run:%Y-%m-%d %H:%M %Z}  — {JOBS[name].description}")
    counts = run_with_services(settings, lambda services: outbox_counts(services, now))
    print(f"{'outbox':<16} due {counts.due}, held {counts.held}, failed {counts.failed}"
          "  — durable delivery of every message (always running)")
    return 0


def cmd_jobs_run(args: argparse.Namespace) -> int:
    from bot.bootstrap import flush_outbox
    from handlers.clock import SystemClock
    from scheduler.jobs import JOBS, run_job

    settings = load_settings()
    load_org(settings)
    if args.name not in (*JOBS, "outbox"):
        raise UsageError(f"mcu jobs run: unknown job {args.name!r}; one of: "
                         f"{', '.join((*JOBS, 'outbox'))}")
    now = parse_moment(args.now, settings, "--now") if args.now else SystemClock().now()

    async def run(services: Services) -> tuple[int, int | None]:
        queued = 0
        if args.name != "outbox":
            # Decided as if at --now; delivered by the real clock, right away.
            queued = await run_job(services, args.name, now, force=True, deliver_now=True)
        return queued, await flush_outbox(settings, services)

    queued, sent = run_with_services(settings, run)
    if args.name != "outbox":
        print(f"{args.name}: {queued} message(s) queued")
    if sent is None:
        print("no messenger token here: the running bot (mcu run) delivers what is due")
    else:
        print(f"outbox: {sent} message(s) delivered now")
    return 0


def run_with_services(settings: Settings,
                      work: Callable[[Services], Awaitable[T]]) -> T:
    """Run `work` with the services on a migrated database, then close the engine."""
    from bot.bootstrap import build_services
    from storage.db import create_engine
    from storage.migrate import upgrade

    upgrade(settings.database_url)

    async def main() -> T:
        engine = create_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
        try:
            return await work(build_services(settings, engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------------

def build_parser() -> Parser:
    parser = Parser(prog="mcu", description="Ассистент МЦУ городского округа «Охинский» "
                                            "(the МЦУ assistant).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser("run", help="migrate the database and start the bots")
    run.set_defaults(func=cmd_run)
    serve = commands.add_parser(
        "serve", help="the web process: Telegram webhook, VK Callback API, /healthz, /metrics")
    serve.add_argument("--port", type=int, help="default: MCU_SERVE_PORT, else 8080")
    serve.set_defaults(func=cmd_serve)
    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest")
    migrate.set_defaults(func=cmd_migrate)

    org_commands = command_group(commands, "org", "the organisation file")
    check = org_commands.add_parser("check", help="validate an organisation file")
    check.add_argument("file", nargs="?", help="default: MCU_ORG_FILE or the shipped file")
    check.set_defaults(func=cmd_org_check)
    show = org_commands.add_parser("show", help="print roles, blocks and topics")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--file", help="default: MCU_ORG_FILE or the shipped file")
    show.set_defaults(func=cmd_org_show)

    deadlines = commands.add_parser("deadlines", help="compute the deadlines of an item (JSON)")
    deadlines.add_argument("--kind", required=True, help="message, incident or appeal")
    deadlines.add_argument("--topic", help="topic id (per-topic deadlines)")
    deadlines.add_argument("--received", required=True, help="ISO 8601; local time if no offset")
    deadlines.add_argument("--registered", help="ISO 8601; default: the time of receipt")
    deadlines.set_defaults(func=cmd_deadlines)

    scheduler = commands.add_parser("scheduler", help="run the scheduler alone (no bots)")
    scheduler.set_defaults(func=cmd_scheduler)
    worker = commands.add_parser(
        "worker", help="deliver the outbox and run the scheduler (one leader among all "
                       "workers); any number of copies on PostgreSQL")
    worker.set_defaults(func=cmd_worker)
    jobs_commands = command_group(commands, "jobs", "the scheduler's jobs")
    jobs_list = jobs_commands.add_parser("list", help="the jobs with their next run")
    jobs_list.set_defaults(func=cmd_jobs_list)
    jobs_run = jobs_commands.add_parser("run", help="run one job once, as if at --now")
    jobs_run.add_argument("name", help="outbox, reminders, escalations, polls, daily_summary, "
                                       "weekly_summary, growth")
    jobs_run.add_argument("--now", help="ISO 8601 moment (local time if no offset)")
    jobs_run.set_defaults(func=cmd_jobs_run)

    staff_commands = command_group(commands, "staff", "staff accounts and invitations")
    invite = staff_commands.add_parser("invite", help="create a one-time invitation code")
    invite.add_argument("--role", required=True, help="curator, chairman, im_coordinator, press, "
                                                      "head, executor or operator")
    invite.add_argument("--block", help="block id (required for head and executor)")
    invite.add_argument("--name", help="position and/or name, e.g. «Начальник отдела ЖКХ»")
    invite.set_defaults(func=cmd_staff_invite)
    listing = staff_commands.add_parser("list", help="list staff members")
    listing.set_defaults(func=cmd_staff_list)
    revoke = staff_commands.add_parser("revoke", help="revoke a staff member's access")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_staff_revoke)

    from bot.stats_cli import add_stats_parsers  # here: it imports this module's helpers

    add_stats_parsers(commands)
    from bot.import_cli import add_import_parser  # here: it imports this module's helpers
    from bot.privacy_cli import add_privacy_parser
    from bot.topics_cli import add_topics_parser

    add_import_parser(commands)
    add_privacy_parser(commands)
    add_topics_parser(commands)
    from bot.backup_cli import add_backup_parsers

    add_backup_parsers(commands)
    return parser


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (MCU_LOG_FORMAT=json): time, level, logger, message. The
    messages are the same as in the text format, which never carry texts or names."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created).astimezone()
                 .isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(verbose: bool) -> None:
    try:
        log_format = Settings().log_format
    except ValidationError:  # the command itself reports the configuration error
        log_format = "text"
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLogFormatter())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        configure_logging(args.verbose)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("aiogram.event").setLevel(logging.WARNING)
        logging.getLogger("pymorphy3").setLevel(logging.WARNING)
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
