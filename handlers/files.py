"""Attachments on disk under MCU_DATA_DIR, addressed by a relative path stored in the database."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
              "application/pdf": ".pdf"}


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, data: bytes, mime: str, now: datetime, filename: str | None = None) -> str:
        suffix = EXTENSIONS.get(mime) or safe_suffix(filename) or ".bin"
        relative = Path("attachments") / f"{now:%Y}" / f"{now:%m}" / (uuid.uuid4().hex + suffix)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash never leaves a half-written file under the final name.
        temporary = target.with_suffix(target.suffix + ".part")
        temporary.write_bytes(data)
        temporary.replace(target)
        return relative.as_posix()

    def path(self, relative: str) -> Path:
        return self.root / relative

    def delete(self, relative: str) -> None:
        (self.root / relative).unlink(missing_ok=True)


def safe_suffix(filename: str | None) -> str | None:
    """The extension of a user's file name, if it is a plain one (".docx"), for readability."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if 1 < len(suffix) <= 8 and suffix[1:].isalnum() else None


def orphans(root: Path, known: set[str], before: float) -> list[str]:
    """Files under attachments/ that no attachment row names and that were last written
    before the POSIX time `before` (a file is saved just before its row is committed)."""
    folder = root / "attachments"
    if not folder.exists():
        return []
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in known and path.stat().st_mtime < before:
            found.append(relative)
    return sorted(found)
