"""`mcu backup FILE` and `mcu restore FILE`: the edge of storage/backup.py.

- On SQLite, `mcu backup` copies the live database while the bot runs (one consistent snapshot,
  checked with `PRAGMA integrity_check`); `--with-files` also archives the attachments under
  MCU_DATA_DIR as FILE.files.tar.
- `mcu restore` puts a backup in place of the database once no process uses it, keeping the
  replaced database as `<db>.before-restore-<time>`.
- On PostgreSQL both print the `pg_dump` / `pg_restore` command for the configured database.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.cli import _safe_url, load_settings
from bot.settings import Settings
from storage.backup import (
    DEFAULT_PAGES,
    DEFAULT_PAUSE,
    BackupError,
    Summary,
    archive_files,
    backup_sqlite,
    check_backup,
    extract_files,
    files_archive_of,
    live_leases,
    open_elsewhere,
    pg_commands,
    restore_sqlite,
    sqlite_path,
)


def add_backup_parsers(commands: Any) -> None:
    backup = commands.add_parser(
        "backup", help="back up the database while the bot runs (SQLite); for PostgreSQL, "
                       "print the pg_dump command")
    backup.add_argument("file", help="where to write the copy (refused if it exists)")
    backup.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    backup.add_argument("--with-files", action="store_true",
                        help="also archive the attachments (photos, documents) under "
                             "MCU_DATA_DIR as FILE.files.tar")
    backup.add_argument("--pages", type=int, default=DEFAULT_PAGES,
                        help=f"pages copied per step (default {DEFAULT_PAGES})")
    backup.add_argument("--pause", type=float, default=DEFAULT_PAUSE,
                        help=f"seconds between steps, leaving the disk to the bot "
                             f"(default {DEFAULT_PAUSE})")
    backup.set_defaults(func=cmd_backup)

    restore = commands.add_parser(
        "restore", help="replace the SQLite database with a backup (the bot must be stopped); "
                        "for PostgreSQL, print the pg_restore command")
    restore.add_argument("file", help="a file written by `mcu backup`")
    restore.add_argument("--force", action="store_true",
                         help="restore although a lease of a bot process looks alive (only when "
                              "that process is known to be gone)")
    restore.add_argument("--with-files", action="store_true",
                         help="also unpack FILE.files.tar into MCU_DATA_DIR")
    restore.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> int:
    settings = load_settings()
    target = Path(args.file)
    database = sqlite_path(settings.database_url)
    if database is None:
        return print_pg_commands(settings, target)
    archive = files_archive_of(target)
    if args.with_files and archive.exists() and not args.force:
        return refuse("backup", f"{archive} exists; choose another name or add --force")
    try:
        summary = backup_sqlite(database, target, force=args.force, pages=args.pages,
                                pause=args.pause)
        print(f"backup written: {target} ({describe(summary)})")
        if args.with_files:
            # After the database: every file the copy names was saved before its row was
            # committed, so it is on disk now (unless erased meanwhile, as it should be).
            count, size = archive_files(settings.data_dir, archive, force=args.force)
            print(f"files archived: {archive} ({count} file(s), {megabytes(size)})")
    except BackupError as error:
        return refuse("backup", str(error))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    settings = load_settings()
    source = Path(args.file)
    database = sqlite_path(settings.database_url)
    if database is None:
        return print_pg_commands(settings, source, restore=True)
    archive = files_archive_of(source)
    if args.with_files and not archive.is_file():
        return refuse("restore", f"--with-files: no {archive} next to the backup")
    if source.exists() and database.exists() and source.resolve() == database.resolve():
        return refuse("restore", f"{source} is the database itself")
    scripts = ScriptDirectory.from_config(alembic_config(settings.database_url))
    known = {script.revision for script in scripts.walk_revisions()}
    try:
        summary = check_backup(source, known)
    except BackupError as error:
        return refuse("restore", str(error))
    # Before this process opens the database itself (see open_elsewhere).
    if open_elsewhere(database):
        return refuse("restore", f"{database} is open in another process (mcu run, serve, "
                                 "worker or scheduler, or a backup): stop it first")
    leases = live_leases(database)
    if leases and not args.force:
        held = ", ".join(f"{lease.name} by {lease.holder} until "
                         f"{lease.expires_at:%H:%M:%S} UTC" for lease in leases)
        return refuse("restore", f"a bot process holds the database ({held}): stop it first; "
                                 "a lease of a crashed process expires within 30 s "
                                 "(--force restores anyway)")
    kept = restore_sqlite(source, database, now=datetime.now(UTC))
    print(f"restored: {source} → {database} ({describe(summary)})")
    if kept is not None:
        print(f"the replaced database is kept as {kept}")
    if args.with_files:
        try:
            count = extract_files(archive, settings.data_dir)
        except BackupError as error:
            return refuse("restore", str(error))
        print(f"files restored: {count} from {archive} into {settings.data_dir}")
    print("next: `mcu migrate` (or `mcu run`, which migrates) brings an older schema up to "
          "date; attachments no row names are deleted by the hourly housekeeping job")
    return 0


def print_pg_commands(settings: Settings, file: Path, *, restore: bool = False) -> int:
    dump, restore_command = pg_commands(settings.database_url, file)
    print(f"PostgreSQL ({_safe_url(settings.database_url)}) is backed up with its own tools.")
    if restore:
        print("Stop mcu serve, mcu worker and mcu run, then restore with:")
        print(f"  {restore_command}")
        print("and run `mcu migrate`.")
    else:
        print("Run (works while the bot runs: pg_dump reads one consistent snapshot):")
        print(f"  {dump}")
        print("Restore later with:")
        print(f"  {restore_command}")
    print("The password is not shown: give it through PGPASSWORD or ~/.pgpass "
          "(host:port:database:user:password, mode 0600).")
    return 0


def describe(summary: Summary) -> str:
    items = "no items table" if summary.items is None else f"{summary.items} item(s)"
    return f"{megabytes(summary.size)}, {items}, schema {summary.revision or 'none'}"


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def refuse(command: str, message: str) -> int:
    print(f"mcu {command}: {message}", file=sys.stderr)
    return 1

