"""The core rule of this codebase: one messenger-neutral core."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE_PACKAGES = ("handlers", "storage", "scheduler")
FRAMEWORKS = ("aiogram", "vkbottle")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_a_messenger_framework():
    offenders = []
    for package in CORE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in imported_modules(path):
                if module.split(".")[0] in FRAMEWORKS:
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == [], "the core must stay messenger-neutral:\n" + "\n".join(offenders)


def test_core_never_imports_the_transports():
    offenders = []
    for package in CORE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in imported_modules(path):
                if module in ("bot.telegram", "bot.vk", "bot.bootstrap"):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_the_check_itself_sees_the_transports():
    # Guard against a scanner that silently finds nothing.
    transports = [p for p in (ROOT / "bot").glob("*.py") if p.stem in ("telegram", "vk")]
    for path in transports:
        assert any(m.split(".")[0] in FRAMEWORKS for m in imported_modules(path))
