"""Every text key used in code exists in both catalogs; Russian is complete."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

from handlers.i18n import catalog

ROOT = Path(__file__).resolve().parents[1]
LITERAL = re.compile(r"^[a-z_]+(?:\.[a-z_]+)+$")
DYNAMIC_PREFIXES = ("status.", "history.", "kind.", "channel.", "content.", "card.")


def keys_in_code() -> set[str]:
    """Every string literal that looks like a text key of a known namespace."""
    namespaces = {key.split(".")[0] for key in catalog("ru")}
    found: set[str] = set()
    for package in ("handlers", "scheduler", "bot"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    value = node.value
                    if LITERAL.match(value) and value.split(".")[0] in namespaces:
                        found.add(value)
    # Pieces of f-strings (e.g. "staff.answer_") are completed at run time; see below.
    return {k for k in found if not k.endswith((".py", "_", "."))}


def test_every_key_used_in_code_is_translated():
    ru, en = catalog("ru"), catalog("en")
    missing_ru = sorted(k for k in keys_in_code() if k not in ru)
    missing_en = sorted(k for k in keys_in_code() if k not in en)
    assert missing_ru == [] and missing_en == []


def test_catalogs_have_the_same_keys_and_placeholders():
    ru, en = catalog("ru"), catalog("en")
    assert set(ru) == set(en)
    fields = string.Formatter()
    for key in ru:
        ru_fields = {f for _, f, _, _ in fields.parse(ru[key]) if f}
        en_fields = {f for _, f, _, _ in fields.parse(en[key]) if f}
        assert ru_fields == en_fields, key


def test_dynamic_keys_cover_every_value():
    from handlers.events import Unsupported
    from handlers.org import CHANNELS, Role
    from handlers.rules.deadlines import Kind
    from handlers.rules.lifecycle import Status
    from handlers.staff.invites import InviteError  # noqa: F401 - its reasons are below
    from handlers.staff.tasks import FILTERS

    ru = catalog("ru")
    reasons = ("unknown_code", "used", "expired", "unknown_role", "block_required",
               "unknown_block", "block_not_allowed")
    expected = ([f"status.{s}" for s in Status] + [f"kind.{k}" for k in Kind]
                + [f"channel.{c}" for c in CHANNELS] + [f"content.{u}" for u in Unsupported]
                + [f"role.{r}" for r in Role] + [f"help.staff.{r}" for r in Role]
                + [f"invite.{r}" for r in reasons] + [f"tasks.filter.{f}" for f in FILTERS]
                + ["bind.done.summary", "bind.done.block", "staff.answer_submitted",
                   "staff.answer_answered", "staff.approve_answered", "staff.approve_endorsed"])
    assert [k for k in expected if k not in ru] == []
    assert all(k.startswith(DYNAMIC_PREFIXES) or k for k in expected)
