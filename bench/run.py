"""Every benchmark in one table: `python bench/run.py [--quick]`.

Runs, in this order, bench/dialog.py, cards.py, outbound.py, sweeps.py, summary.py and
memory.py (each `run(quick) -> list[Row]`, each figure a ratio to a baseline measured in the
same run), prints the table and writes it to bench/.data/last_run.md. A module that is not
there yet is skipped with a note. The full run takes up to about 15 minutes on a 2-core
machine, `--quick` about one. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import DATA_DIR, Row, table  # noqa: E402

BENCHES = ("dialog", "cards", "outbound", "sweeps", "summary", "memory")


def run_all(quick: bool) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    for name in BENCHES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"bench.{name}":
                raise
            notes.append(f"bench/{name}.py: not there, skipped")
            print(notes[-1], flush=True)
            continue
        print(f"bench/{name}.py …", flush=True)
        started = time.perf_counter()
        try:
            produced = module.run(quick)
        except Exception:
            traceback.print_exc()
            notes.append(f"bench/{name}.py: failed (see the traceback above)")
            continue
        took = time.perf_counter() - started
        rows += produced
        notes.append(f"bench/{name}.py: {took:.0f} s")
        print(table(produced), flush=True)
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets, about 1 min")
    args = parser.parse_args()
    started = time.perf_counter()
    rows, notes = run_all(args.quick)
    total = time.perf_counter() - started
    text = table(rows)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = (f"# bench/run.py{' --quick' if args.quick else ''}, {when}, {total:.0f} s\n\n"
              f"{text}\n\n" + "\n".join(f"- {note}" for note in notes) + "\n")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    (DATA_DIR / "last_run.md").write_text(report, encoding="utf-8")
    print()
    print(text)
    print(f"\n{total:.0f} s; written to {DATA_DIR / 'last_run.md'}")


if __name__ == "__main__":
    main()
