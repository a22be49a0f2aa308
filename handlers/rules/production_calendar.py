"""The Russian production calendar as data: days off and transferred working days per year.

`production_calendar.json` next to this module is generated from ``holidays.Russia`` (python
-m handlers.rules.production_calendar) for the years a deployment meets in practice. The bot
reads the file instead of importing the ``holidays`` package, which loads the modules of every
country it knows (some 300, +17 MB of resident memory). A year outside the file is computed
from the library, as before. tests/test_deadlines.py checks the file against the installed
library: when a new release brings a decree's transfers, the test says to regenerate it.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).with_name("production_calendar.json")
YEARS = range(2020, 2036)


def from_library(year: int) -> tuple[frozenset[date], frozenset[date]]:
    """(days off, transferred working days) of one year, computed by ``holidays``."""
    import holidays

    # Neighbouring years are generated too, so an observed day off that spills over a year
    # boundary is still seen; only ``year`` is kept.
    ru = holidays.Russia(years=range(year - 1, year + 2))
    return (frozenset(d for d in ru if d.year == year),
            frozenset(d for d in ru.weekend_workdays if d.year == year))


def year_data(year: int) -> tuple[frozenset[date], frozenset[date]]:
    """(days off, transferred working days) of one year: from the file, else the library."""
    stored = _stored().get(year)
    return stored if stored is not None else from_library(year)


@cache
def _stored() -> dict[int, tuple[frozenset[date], frozenset[date]]]:
    try:
        raw = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {int(year): (frozenset(map(date.fromisoformat, days["off"])),
                        frozenset(map(date.fromisoformat, days["work"])))
            for year, days in raw["years"].items()}


def generate() -> dict[str, object]:
    import holidays

    years = {}
    for year in YEARS:
        off, work = from_library(year)
        years[str(year)] = {"off": sorted(map(str, off)), "work": sorted(map(str, work))}
    return {"source": f"holidays {holidays.__version__}, Russia", "years": years}


def main() -> int:
    DATA_FILE.write_text(json.dumps(generate(), ensure_ascii=False, indent=1) + "\n",
                         encoding="utf-8")
    print(f"written: {DATA_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
