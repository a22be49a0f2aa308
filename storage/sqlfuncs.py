"""SQL expressions that have no common spelling in SQLite and PostgreSQL.

- the difference of two timestamps in whole seconds: SQLite keeps them as ISO text
  (`strftime('%s')` gives seconds), PostgreSQL as timestamps (`EXTRACT(EPOCH FROM …)`);
- a column hidden from SQLite's planner (`+column`), a plain column elsewhere.

Each is compiled per dialect here, so every query that uses them stays the same on both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


def _arguments(element: Any, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    later, earlier = list(element.clauses)
    return compiler.process(later, **kw), compiler.process(earlier, **kw)


class seconds_between(FunctionElement[int]):
    """seconds_between(later, earlier): whole seconds, both moments cut to the second first
    (the same rule as storage.rollups.whole_seconds in Python). NULL if either is NULL."""

    type = Integer()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _arguments(element, compiler, **kw)
    return (f"(CAST(strftime('%s', {later}) AS INTEGER) - "
            f"CAST(strftime('%s', {earlier}) AS INTEGER))")


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _arguments(element, compiler, **kw)
    return (f"(CAST(EXTRACT(EPOCH FROM date_trunc('second', {later})) AS BIGINT) - "
            f"CAST(EXTRACT(EPOCH FROM date_trunc('second', {earlier})) AS BIGINT))")


@compiles(seconds_between)
def _seconds_other(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(f"seconds_between is not defined for {compiler.dialect.name}")


class unindexed(FunctionElement[Any]):
    """The column's value, hidden from SQLite's planner (`+column`, SQLite's documented way to
    keep a term from choosing an index); the plain column elsewhere.

    For a median by position or the open items past their deadline, SQLite would pick the
    period's (column, received_at) index and sort, where walking an index already in the
    wanted order is 100× cheaper; the period is still checked, from the same index entry.
    PostgreSQL's planner finds these plans itself.
    """

    name = "unindexed"
    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type  # comparisons bind their values with the column's type


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"+{compiler.process(column, **kw)}"


@compiles(unindexed)
def _unindexed_other(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return str(compiler.process(column, **kw))


def on_conflict_insert(dialect: str) -> Any:
    """The `insert()` of the dialect, for `INSERT … ON CONFLICT`: both databases spell it the
    same, but each dialect builds it with its own insert construct."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise CompileError(f"no INSERT … ON CONFLICT for {dialect}")
    return insert
