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
    assert len(transports) == 2
    for path in transports:
        assert any(m.split(".")[0] in FRAMEWORKS for m in imported_modules(path))


def module_level_imports(path: Path) -> set[str]:
    """Imports that run when the module is loaded (not those inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_each_framework_stays_inside_its_transport():
    # bot/telegram*.py may import aiogram, bot/vk*.py vkbottle; nothing else in bot/ either.
    owners = {"aiogram": "telegram", "vkbottle": "vk"}
    offenders = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        for module in imported_modules(path):
            framework = module.split(".")[0]
            if framework in owners and not path.stem.startswith(owners[framework]):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == [], "\n".join(offenders)


def test_only_the_composition_root_loads_a_transport_and_only_lazily():
    offenders = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        if path.stem.startswith(("telegram", "vk")):
            continue
        lazy_allowed = path.stem == "bootstrap"
        for module in imported_modules(path):
            if not module.startswith(("bot.telegram", "bot.vk")):
                continue
            if not lazy_allowed or module in module_level_imports(path):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == [], "\n".join(offenders)


def test_lower_layers_never_import_bot():
    offenders = []
    for package in CORE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in imported_modules(path):
                if module == "bot" or module.startswith("bot."):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == [], "handlers/, storage/ and scheduler/ sit below bot/:\n" + "\n".join(
        offenders)
