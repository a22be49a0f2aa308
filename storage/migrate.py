"""Alembic, driven from code: `mcu migrate` and `mcu run` call `upgrade`.

Alembic (about 11 MB resident) is imported only when there is something to migrate: a SQLite
file already at the latest revision is recognised by reading its `alembic_version` and the
revision ids of the migration files, without alembic.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"^revision\b[^=]*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\b[^=]*=\s*(.+)$", re.MULTILINE)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revisions() -> set[str]:
    """The revisions no other migration builds on, read from the files' own lines."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN.search(text)
        if revision is None:
            continue
        revisions.add(revision.group(1))
        if down is not None:
            parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    return revisions - parents


def is_up_to_date(url: str) -> bool:
    """True when a SQLite file is at the latest revision; False when it is not, or when
    that cannot be told cheaply (PostgreSQL, a missing file): then alembic decides."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    path = Path(parsed.database)  # type: ignore[arg-type]
    if not path.exists():
        return False
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            current = {row[0] for row in connection.execute(
                "SELECT version_num FROM alembic_version")}
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return bool(current) and current == head_revisions()


def _upgrade(url: str, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url`; safe to call from inside a running event loop."""
    if revision == "head" and is_up_to_date(url):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _upgrade(url, revision)
        return
    # env.py runs its own loop with asyncio.run; keep it off the caller's loop.
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            _upgrade(url, revision)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(_upgrade, url, revision)
