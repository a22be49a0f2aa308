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


# ---------------------------------------------------------------------------------------------
# Layers: bot/ (edges, wiring) → scheduler/ (the clock) → handlers/ (the core) → storage/
# (memory). An import may only point down. Inside handlers/, the feature packages (one per
# audience) do not reach into each other's conversations: what two features share lives in a
# shared module or a use case at the top of handlers/.

LAYERS = {"bot": 3, "scheduler": 2, "handlers": 1, "storage": 0}
FEATURE_PACKAGES = ("citizen", "staff", "operator", "analytics", "topics")
# What storage may use from handlers: pure rules and the organisation's settings, no features.
STORAGE_MAY_USE = ("handlers.rules", "handlers.org")
# The conversations: only the core's entry point dispatches to them.
DIALOGS = ("handlers.citizen.dialog", "handlers.staff.dialog")


def imported_names(path: Path) -> set[str]:
    """Modules, and for `from a.b import c` also `a.b.c` (c may be a module), anywhere in the
    file, lazy imports inside functions included."""
    names = imported_modules(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def imports_by_file() -> dict[str, set[str]]:
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                found[path.relative_to(ROOT).as_posix()] = imported_names(path)
    return found


def test_imports_only_point_down_the_layers():
    offenders = []
    for path, modules in imports_by_file().items():
        layer = LAYERS[path.split("/")[0]]
        for module in modules:
            top = module.split(".")[0]
            if top in LAYERS and LAYERS[top] > layer and not module.startswith(STORAGE_MAY_USE):
                offenders.append(f"{path} imports {module}")
    assert offenders == [], "\n".join(offenders)


def test_storage_uses_only_pure_rules_from_the_core():
    offenders = [f"{path} imports {module}"
                 for path, modules in imports_by_file().items() if path.startswith("storage/")
                 for module in modules
                 if module.startswith("handlers") and not module.startswith(STORAGE_MAY_USE)]
    assert offenders == [], "\n".join(offenders)


def test_no_feature_reaches_into_another_features_conversation():
    offenders = []
    for path, modules in imports_by_file().items():
        parts = path.split("/")
        if parts[0] != "handlers":
            continue
        own = parts[1] if len(parts) > 2 else None
        for module in modules:
            if module in DIALOGS and path != "handlers/core.py":
                offenders.append(f"{path} imports {module}")
            names = module.split(".")
            if (own in FEATURE_PACKAGES and len(names) > 2 and names[0] == "handlers"
                    and names[1] in FEATURE_PACKAGES and names[1] != own
                    and names[2] in ("dialog", "common", "chat")):
                offenders.append(f"{path} imports {module}")
    assert offenders == [], "\n".join(offenders)


def test_the_layer_check_itself_sees_imports():
    found = imports_by_file()
    assert "handlers.citizen.dialog" in found["handlers/core.py"]
    assert any(m.startswith("handlers") for m in found["storage/models.py"])
