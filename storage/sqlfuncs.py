"""SQL expressions that have no common spelling in SQLite and PostgreSQL.

There is exactly one: the difference of two timestamps. SQLite keeps them as ISO text (its
`julianday` gives days), PostgreSQL as timestamps (`EXTRACT(EPOCH FROM a - b)` gives seconds).
It is compiled per dialect here, so every query that uses it stays the same on both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class hours_between(FunctionElement[float]):
    """hours_between(later, earlier): (later - earlier) in hours, as a float."""

    type = Float()
    name = "hours_between"
    inherit_cache = True


def _arguments(element: hours_between, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    later, earlier = list(element.clauses)
    return compiler.process(later, **kw), compiler.process(earlier, **kw)


@compiles(hours_between, "sqlite")
def _hours_sqlite(element: hours_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _arguments(element, compiler, **kw)
    return f"((julianday({later}) - julianday({earlier})) * 24.0)"


@compiles(hours_between, "postgresql")
def _hours_postgresql(element: hours_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _arguments(element, compiler, **kw)
    return f"(CAST(EXTRACT(EPOCH FROM ({later} - {earlier})) AS DOUBLE PRECISION) / 3600.0)"


@compiles(hours_between)
def _hours_other(element: hours_between, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(f"hours_between is not defined for {compiler.dialect.name}")
