"""`mcu backup` and `mcu restore` as an administrator runs them: the real CLI in a subprocess,
on a real SQLite file that another process keeps writing to."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from handlers.clock import ManualClock
from handlers.items import NewItem
from handlers.registration import register
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Actor
from storage import leases
from tests.conftest import DEFAULT_START, make_services

ROOT = Path(__file__).resolve().parents[1]
# Enough items that the copy takes many steps while the writer goes on committing.
ITEMS_BEFORE_BACKUP = 60
STARTUP_TIMEOUT = 120.0  # seconds: a loaded machine imports slowly


def mcu(tmp_path: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCU_")}
    env["MCU_DATABASE_URL"] = url or f"sqlite+aiosqlite:///{tmp_path / 'mcu.sqlite3'}"
    env["MCU_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONPATH"] = str(ROOT)
    # cwd: no .env of the checkout is read.
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def numbers_in(path: Path) -> list[str]:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [row[0] for row in connection.execute("SELECT number FROM items ORDER BY id")]
    finally:
        connection.close()


def checks(path: Path) -> tuple[list[str], list[tuple[object, ...]]]:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        integrity = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        foreign = connection.execute("PRAGMA foreign_key_check").fetchall()
        return integrity, foreign
    finally:
        connection.close()


def committed(numbers_file: Path) -> list[str]:
    """The numbers the writer reported as committed (complete lines only)."""
    text = numbers_file.read_text(encoding="utf-8") if numbers_file.exists() else ""
    return text.split("\n")[:-1]


async def register_items(url: str, data_dir: Path, count: int,
                         start: datetime = DEFAULT_START) -> list[str]:
    clock = ManualClock(start)
    services = await make_services(url, data_dir, clock)
    numbers = []
    try:
        for _ in range(count):
            clock.advance(seconds=1)
            async with services.sessions() as session, session.begin():
                item = await register(session, services, NewItem(
                    kind=Kind.MESSAGE, channel="phone", topic="roads",
                    text="Яма на дороге у дома 5", received_at=clock.now()), Actor.OPERATOR)
            numbers.append(item.number)
    finally:
        await services.sessions.kw["bind"].dispose()
    return numbers


# ---------------------------------------------------------------------------------------------
# Backup

def test_backup_while_another_process_writes(tmp_path: Path) -> None:
    database = tmp_path / "mcu.sqlite3"
    url = f"sqlite+aiosqlite:///{database}"
    numbers_file = tmp_path / "committed.txt"
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.support.backup_writer", url, str(tmp_path / "data"),
         str(numbers_file)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while len(committed(numbers_file)) < ITEMS_BEFORE_BACKUP:
            assert writer.poll() is None, writer.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the writer registered too few items"
            time.sleep(0.2)
        before = committed(numbers_file)
        # Small steps with pauses: the copy takes a few hundred steps, the writer goes on.
        result = mcu(tmp_path, "backup", "backup.sqlite3", "--pages", "2", "--pause", "0.01")
        during = committed(numbers_file)
        assert writer.poll() is None, "the writer stopped during the backup"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert result.returncode == 0, result.stderr
    backup = tmp_path / "backup.sqlite3"
    assert "backup written: backup.sqlite3" in result.stdout
    assert checks(backup) == (["ok"], [])
    copied = numbers_in(backup)
    # Every item committed before the backup began, and the copy is one moment of the
    # database: exactly the first items the writer committed, nothing half-written.
    assert set(before) <= set(copied)
    assert copied == committed(numbers_file)[:len(copied)]
    assert f"{len(copied)} item(s)" in result.stdout
    # The writer committed while the copy ran, and the copy did not wait for it to stop.
    assert len(during) > len(before)
    assert len(numbers_in(database)) > len(copied)
    # A self-contained file: no write-ahead log needed next to it.
    assert not (tmp_path / "backup.sqlite3-wal").exists()
    assert not (tmp_path / "backup.sqlite3.tmp").exists()
    print(f"\nbackup during writes: {len(before)} committed before, {len(copied)} in the copy, "
          f"{len(during) - len(before)} committed while it ran")


def test_backup_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    asyncio.run(register_items(f"sqlite+aiosqlite:///{tmp_path / 'mcu.sqlite3'}",
                               tmp_path / "data", 2))
    target = tmp_path / "backup.sqlite3"
    target.write_text("an older backup")
    refused = mcu(tmp_path, "backup", str(target))
    assert refused.returncode == 1
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert target.read_text() == "an older backup"
    forced = mcu(tmp_path, "backup", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(numbers_in(target)) == 2


def test_backup_of_a_missing_database_says_so(tmp_path: Path) -> None:
    result = mcu(tmp_path, "backup", "backup.sqlite3")
    assert result.returncode == 1
    assert "no database at" in result.stderr
    assert not (tmp_path / "backup.sqlite3").exists()


# ---------------------------------------------------------------------------------------------
# Restore

def test_restore_round_trip_with_files(tmp_path: Path) -> None:
    database = tmp_path / "mcu.sqlite3"
    url = f"sqlite+aiosqlite:///{database}"
    data = tmp_path / "data"
    first = asyncio.run(register_items(url, data, 3))
    photo = data / "attachments" / "2026" / "11" / "photo.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"\xff\xd8 a photo")
    (data / "cache").mkdir()
    (data / "cache" / "model.bin").write_bytes(b"not an attachment")

    made = mcu(tmp_path, "backup", "b.sqlite3", "--with-files")
    assert made.returncode == 0, made.stderr
    assert "files archived: b.sqlite3.files.tar (1 file(s)" in made.stdout
    with tarfile.open(tmp_path / "b.sqlite3.files.tar") as archive:
        assert archive.getnames() == ["attachments/2026/11/photo.jpg"]

    later = asyncio.run(register_items(url, data, 2, DEFAULT_START + timedelta(hours=1)))
    photo.unlink()

    restored = mcu(tmp_path, "restore", "b.sqlite3", "--with-files")
    assert restored.returncode == 0, restored.stderr
    assert numbers_in(database) == first
    assert photo.read_bytes() == b"\xff\xd8 a photo"
    assert checks(database) == (["ok"], [])
    kept = list(tmp_path.glob("mcu.sqlite3.before-restore-*"))
    assert len(kept) == 1 and f"kept as {kept[0]}" in restored.stdout
    assert numbers_in(kept[0]) == first + later  # what was replaced, log included
    assert (tmp_path / "b.sqlite3").exists()  # the backup itself stays
    assert not (tmp_path / "mcu.sqlite3.restore.tmp").exists()

    # The restored database is what the bot opens next: migrations and writes work.
    migrated = mcu(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    more = asyncio.run(register_items(url, data, 1, DEFAULT_START + timedelta(hours=2)))
    assert numbers_in(database) == first + more
    assert more[0] not in first  # numbering goes on from the copy


def test_restore_removes_the_old_write_ahead_log(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mcu.sqlite3'}"
    first = asyncio.run(register_items(url, tmp_path / "data", 1))
    assert mcu(tmp_path, "backup", "b.sqlite3").returncode == 0
    asyncio.run(register_items(url, tmp_path / "data", 1, DEFAULT_START + timedelta(hours=1)))
    # A -wal left by a process that died: its frames belong to the old file.
    wal = tmp_path / "mcu.sqlite3-wal"
    wal.write_bytes(b"stale frames of the replaced database")
    (tmp_path / "mcu.sqlite3-shm").write_bytes(b"\0" * 32768)
    restored = mcu(tmp_path, "restore", "b.sqlite3")
    assert restored.returncode == 0, restored.stderr
    assert not wal.exists()
    assert numbers_in(tmp_path / "mcu.sqlite3") == first
    assert checks(tmp_path / "mcu.sqlite3") == (["ok"], [])


def test_restore_refused_while_a_bot_process_holds_a_lease(tmp_path: Path) -> None:
    database = tmp_path / "mcu.sqlite3"
    url = f"sqlite+aiosqlite:///{database}"
    first = asyncio.run(register_items(url, tmp_path / "data", 1))
    assert mcu(tmp_path, "backup", "b.sqlite3").returncode == 0
    later = asyncio.run(register_items(url, tmp_path / "data", 1,
                                       DEFAULT_START + timedelta(hours=1)))

    async def hold(name: str, expires_in: timedelta) -> None:
        services = await make_services(url, tmp_path / "data", ManualClock(DEFAULT_START))
        try:
            now = datetime.now(UTC)
            assert await leases.take(services.sessions, name, "okha-1:4242:ab12cd34", now,
                                     expires_in)
        finally:
            await services.sessions.kw["bind"].dispose()

    # A lease that ran out long ago (a process that died) does not block.
    asyncio.run(hold("vk-poller:77", timedelta(seconds=-60)))
    asyncio.run(hold("telegram-poller:4242", timedelta(minutes=10)))
    refused = mcu(tmp_path, "restore", "b.sqlite3")
    assert refused.returncode == 1
    assert "telegram-poller:4242 by okha-1:4242:ab12cd34" in refused.stderr
    assert "vk-poller" not in refused.stderr
    assert numbers_in(database) == first + later
    assert not list(tmp_path.glob("mcu.sqlite3.before-restore-*"))

    forced = mcu(tmp_path, "restore", "b.sqlite3", "--force")
    assert forced.returncode == 0, forced.stderr
    assert numbers_in(database) == first


def test_restore_refused_while_another_process_has_the_database_open(tmp_path: Path) -> None:
    database = tmp_path / "mcu.sqlite3"
    url = f"sqlite+aiosqlite:///{database}"
    first = asyncio.run(register_items(url, tmp_path / "data", 1))
    assert mcu(tmp_path, "backup", "b.sqlite3").returncode == 0
    # Any process using the file, with or without a lease (here: this test process).
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        connection.execute("SELECT count(*) FROM items").fetchone()
        refused = mcu(tmp_path, "restore", "b.sqlite3", "--force")
    finally:
        connection.close()
    assert refused.returncode == 1
    assert "open in another process" in refused.stderr
    assert numbers_in(database) == first
    assert mcu(tmp_path, "restore", "b.sqlite3").returncode == 0


@pytest.mark.parametrize("content, reason", [
    (b"this is not a database, just text" * 200, "integrity_check"),
    (None, "no alembic_version table"),
])
def test_restore_refuses_a_file_that_is_not_a_sound_backup(tmp_path: Path, content: bytes | None,
                                                           reason: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mcu.sqlite3'}"
    first = asyncio.run(register_items(url, tmp_path / "data", 1))
    candidate = tmp_path / "candidate.sqlite3"
    if content is None:
        other = sqlite3.connect(candidate)
        other.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
        other.commit()
        other.close()
    else:
        candidate.write_bytes(content)
    refused = mcu(tmp_path, "restore", str(candidate))
    assert refused.returncode == 1
    assert reason in refused.stderr
    assert numbers_in(tmp_path / "mcu.sqlite3") == first


def test_restore_refuses_a_schema_newer_than_the_program(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mcu.sqlite3'}"
    asyncio.run(register_items(url, tmp_path / "data", 1))
    assert mcu(tmp_path, "backup", "b.sqlite3").returncode == 0
    connection = sqlite3.connect(tmp_path / "b.sqlite3")
    connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    connection.commit()
    connection.close()
    refused = mcu(tmp_path, "restore", "b.sqlite3")
    assert refused.returncode == 1
    assert "9999_from_the_future" in refused.stderr and "does not know" in refused.stderr


# ---------------------------------------------------------------------------------------------
# PostgreSQL

def test_postgresql_prints_the_pg_dump_command_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://mcu:s3cret-pass@db.okha.local:5433/mcu_prod"
    result = mcu(tmp_path, "backup", "/var/backups/mcu/mcu.dump", url=url)
    assert result.returncode == 0, result.stderr
    assert ("pg_dump --host=db.okha.local --port=5433 --username=mcu --dbname=mcu_prod "
            "--format=custom --no-owner --file=/var/backups/mcu/mcu.dump") in result.stdout
    assert "PGPASSWORD" in result.stdout and ".pgpass" in result.stdout
    assert "s3cret-pass" not in result.stdout + result.stderr
    assert not Path("/var/backups/mcu/mcu.dump").exists()

    restore = mcu(tmp_path, "restore", "/var/backups/mcu/mcu.dump", url=url)
    assert restore.returncode == 0, restore.stderr
    assert ("pg_restore --host=db.okha.local --port=5433 --username=mcu --dbname=mcu_prod "
            "--clean --if-exists --no-owner --single-transaction /var/backups/mcu/mcu.dump"
            ) in restore.stdout
    assert "s3cret-pass" not in restore.stdout + restore.stderr


def test_restore_over_a_damaged_database_keeps_its_files(tmp_path: Path) -> None:
    database = tmp_path / "mcu.sqlite3"
    first = asyncio.run(register_items(f"sqlite+aiosqlite:///{database}", tmp_path / "data", 2))
    assert mcu(tmp_path, "backup", "b.sqlite3").returncode == 0
    damaged = b"SQLite format 3\0" + b"\xde\xad" * 4000
    database.write_bytes(damaged)
    restored = mcu(tmp_path, "restore", "b.sqlite3")
    assert restored.returncode == 0, restored.stderr
    assert numbers_in(database) == first
    [kept] = tmp_path.glob("mcu.sqlite3.before-restore-*")
    assert kept.read_bytes() == damaged
