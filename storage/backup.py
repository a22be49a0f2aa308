"""Online backup and restore of the SQLite database, and an archive of the attachments.

The backup is taken through SQLite's backup API while the bot runs. In WAL mode (how every
connection of the project opens the file) the copy reads one snapshot: a read transaction is
held on the source connection for the whole copy, so writers go on committing to the log, the
copy never restarts, and it contains exactly what was committed when it began. The pages are
copied a few at a time with a short pause between steps, so the copy does not compete with the
bot for the disk. The result is written next to the target and renamed into place only when it
is complete and has passed `PRAGMA integrity_check`.

PostgreSQL is backed up with its own tools (`pg_dump`); `pg_commands` says which.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url

DEFAULT_PAGES = 256  # pages per step (1 MB with SQLite's default 4 KB pages)
DEFAULT_PAUSE = 0.005  # seconds between steps
BUSY_TIMEOUT = 30.0  # seconds, like storage/db.py
ATTACHMENTS = "attachments"  # handlers/files.py FileStore keeps every file under this folder


class BackupError(Exception):
    """A backup or restore that must not go on; the message says why, for the operator."""


@dataclass(frozen=True)
class Summary:
    """What a database file holds, as the operator wants to see it."""

    size: int
    items: int | None  # None: no items table (not an МЦУ database)
    revision: str | None  # alembic revision; None: never migrated


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: datetime


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL (or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


# ---------------------------------------------------------------------------------------------
# Backup

def backup_sqlite(source: Path, target: Path, *, force: bool = False,
                  pages: int = DEFAULT_PAGES, pause: float = DEFAULT_PAUSE,
                  on_step: Callable[[int, int], None] | None = None) -> Summary:
    """Copy the live database `source` to `target` (consistent, online). `on_step(remaining,
    total)` is called after each step of `pages` pages."""
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; choose another name or add --force to overwrite")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError(f"{target} is the database itself")
    if pages < 1:
        raise BackupError("pages per step must be at least 1")
    partial = target.with_name(target.name + ".tmp")
    _remove(partial)  # left by an interrupted backup
    copy_database(_connect(source), partial, pages=pages, pause=pause, on_step=on_step)
    problem = integrity_problem(partial)
    if problem:
        _remove(partial)
        raise BackupError(f"the copy failed its integrity check: {problem}")
    _fsync(partial)
    os.replace(partial, target)
    _fsync_dir(target.parent)
    return summarize(target)


def copy_database(source: sqlite3.Connection, target: Path, *, pages: int = DEFAULT_PAGES,
                  pause: float = DEFAULT_PAUSE,
                  on_step: Callable[[int, int], None] | None = None) -> None:
    """Copy what `source` holds into a new single file `target` (no -wal beside it), then
    close `source`."""
    destination = sqlite3.connect(target, isolation_level=None)
    try:
        wal = source.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        if wal:
            # The snapshot starts at the first read of this transaction and holds until the
            # end: other processes keep writing to the log, and nothing restarts the copy.
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()

        def step(_status: int, remaining: int, total: int) -> None:
            if on_step is not None:
                on_step(remaining, total)
            if remaining and pause > 0:
                time.sleep(pause)

        source.backup(destination, pages=pages, progress=step)
        if wal:
            source.execute("COMMIT")
        # The copied header says WAL; a backup is one self-contained file.
        destination.execute("PRAGMA journal_mode=DELETE").fetchone()
    finally:
        destination.close()
        source.close()


def summarize(path: Path) -> Summary:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return Summary(size=path.stat().st_size, items=_count_items(connection),
                       revision=_revision(connection))
    finally:
        connection.close()


def integrity_problem(path: Path) -> str | None:
    """None if `PRAGMA integrity_check` says ok; otherwise its first lines."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = [row[0] for row in connection.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as error:  # not a database at all
        return str(error)
    finally:
        connection.close()
    return None if rows == ["ok"] else "; ".join(rows[:5])


def archive_files(data_dir: Path, target: Path, *, force: bool = False) -> tuple[int, int]:
    """Put the attachments under `data_dir` into the tar file `target` (written aside, renamed
    when complete). Returns (files, bytes). Photos are already compressed: a plain tar."""
    if target.exists() and not force:
        raise BackupError(f"{target} exists; choose another name or add --force to overwrite")
    partial = target.with_name(target.name + ".tmp")
    _remove(partial)
    folder = data_dir / ATTACHMENTS
    count = size = 0
    with tarfile.open(partial, "w") as archive:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                # .part: a file being written right now; it is not named by any row yet.
                if not path.is_file() or path.suffix == ".part":
                    continue
                try:
                    archive.add(path, arcname=path.relative_to(data_dir).as_posix())
                except FileNotFoundError:  # erased meanwhile: it must not come back anyway
                    continue
                count += 1
                size += path.stat().st_size if path.exists() else 0
    _fsync(partial)
    os.replace(partial, target)
    _fsync_dir(target.parent)
    return count, size


def files_archive_of(backup: Path) -> Path:
    """Where `mcu backup FILE --with-files` puts the attachments: FILE.files.tar."""
    return backup.with_name(backup.name + ".files.tar")


# ---------------------------------------------------------------------------------------------
# Restore

def check_backup(path: Path, known_revisions: set[str]) -> Summary:
    """Refuse a file that is not a sound МЦУ database this version can migrate."""
    if not path.is_file():
        raise BackupError(f"no file {path}")
    if Path(f"{path}-wal").exists():
        raise BackupError(f"{path}-wal exists: {path} is a live database, not a backup; "
                          "make one with `mcu backup`")
    problem = integrity_problem(path)
    if problem:
        raise BackupError(f"{path} failed PRAGMA integrity_check: {problem}")
    summary = summarize(path)
    if summary.revision is None:
        raise BackupError(f"{path} has no alembic_version table: not an МЦУ database")
    if summary.revision not in known_revisions:
        raise BackupError(f"{path} is at schema revision {summary.revision}, which this "
                          "version of the program does not know (a newer version made it)")
    if summary.items is None:
        raise BackupError(f"{path} has no items table: not an МЦУ database")
    return summary


def live_leases(database: Path, now: datetime | None = None) -> list[Lease]:
    """Leases (storage/leases.py) still held: a process polling a bot or leading the
    scheduler renews its lease every few seconds while it runs."""
    if not database.is_file():
        return []
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    connection = sqlite3.connect(database, timeout=BUSY_TIMEOUT)
    try:
        rows = connection.execute("SELECT name, holder, expires_at FROM leases").fetchall()
    except sqlite3.DatabaseError:  # no leases table, or a damaged file nobody can run on
        return []
    finally:
        connection.close()
    leases = [Lease(name, holder, datetime.fromisoformat(expires)) for name, holder, expires
              in rows]
    return [lease for lease in leases if lease.expires_at > moment]


def open_elsewhere(database: Path) -> bool:
    """Whether another process has the WAL-mode database open right now.

    Every SQLite connection to a WAL database holds a shared lock on one byte of the -shm
    file (the "DMS" byte, offset 128) for as long as it is open; an exclusive lock on it can
    be had only when nobody else has the database open. Call this before this process opens
    the database itself (POSIX locks of one process do not conflict with each other)."""
    shm = Path(f"{database}-shm")
    if os.name != "posix" or not shm.exists():
        return False
    import fcntl

    try:
        descriptor = os.open(shm, os.O_RDWR)
    except OSError as error:
        raise BackupError(f"cannot tell whether {database} is in use ({error}); run this as "
                          "the user the bot runs as") from error
    try:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128, os.SEEK_SET)
        except OSError:
            return True
        fcntl.lockf(descriptor, fcntl.LOCK_UN, 1, 128, os.SEEK_SET)
        return False
    finally:
        os.close(descriptor)


def restore_sqlite(backup: Path, database: Path, *, now: datetime | None = None) -> Path | None:
    """Put `backup` in place of `database`. The database it replaces is first copied (with
    what its log holds) to `<database>.before-restore-<time>`, returned; None if there was no
    database. The caller has checked `backup` and that no process uses `database`."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    database.parent.mkdir(parents=True, exist_ok=True)
    kept: Path | None = None
    if database.exists():
        kept = database.with_name(f"{database.name}.before-restore-{stamp}")
        try:
            # Through the backup API, not a rename: the -wal may hold committed transactions
            # the main file does not have yet.
            copy_database(_connect(database), kept)
            _fsync(kept)
        except sqlite3.DatabaseError:
            # Damaged (often the reason for a restore): keep its files as they are.
            _remove(kept)
            for suffix in ("", "-wal"):
                if Path(f"{database}{suffix}").exists():
                    os.replace(f"{database}{suffix}", f"{kept}{suffix}")
    partial = database.with_name(database.name + ".restore.tmp")
    _remove(partial)
    immutable = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    copy_database(immutable, partial)
    _fsync(partial)
    # The old log and index belong to the replaced file: applied to the restored one they
    # would corrupt it. Remove them before the new file takes the name.
    for suffix in ("-wal", "-shm", "-journal"):
        _remove(Path(f"{database}{suffix}"))
    os.replace(partial, database)
    _fsync_dir(database.parent)
    return kept


def extract_files(archive: Path, data_dir: Path) -> int:
    """Unpack a files archive of `archive_files` into `data_dir`; existing files stay (names
    are random, so nothing is overwritten by a different file). Returns the number of files."""
    count = 0
    with tarfile.open(archive, "r") as tar:
        members = []
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if not parts or parts[0] != ATTACHMENTS or ".." in parts or not member.isfile():
                raise BackupError(f"{archive}: unexpected entry {member.name!r}")
            members.append(member)
        tar.extractall(data_dir, members=members, filter="data")
        count = len(members)
    return count


# ---------------------------------------------------------------------------------------------
# PostgreSQL

def pg_commands(url: str, target: Path) -> tuple[str, str]:
    """The pg_dump and pg_restore commands for the database at `url`, without the password."""
    parsed = make_url(url)
    options = _pg_options(parsed)
    dump = shlex.join(["pg_dump", *options, "--format=custom", "--no-owner",
                       f"--file={target}"])
    restore = shlex.join(["pg_restore", *options, "--clean", "--if-exists", "--no-owner",
                          "--single-transaction", str(target)])
    return dump, restore


def _pg_options(url: URL) -> list[str]:
    options = []
    if url.host:
        options.append(f"--host={url.host}")
    if url.port:
        options.append(f"--port={url.port}")
    if url.username:
        options.append(f"--username={url.username}")
    options.append(f"--dbname={url.database or url.username or 'postgres'}")
    return options


# ---------------------------------------------------------------------------------------------

def _connect(path: Path) -> sqlite3.Connection:
    # mode=rw: never create an empty database where one was expected.
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True,
                                 timeout=BUSY_TIMEOUT, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    return connection


def _count_items(connection: sqlite3.Connection) -> int | None:
    try:
        return int(connection.execute("SELECT count(*) FROM items").fetchone()[0])
    except sqlite3.OperationalError:
        return None


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
