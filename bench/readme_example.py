"""Regenerate the README's analytics example: `python bench/readme_example.py`.

Seeds a temporary SQLite database with synthetic items (bench/synthetic.py), computes the
«Сводка по тематикам» section for November 2026 with the real code, prints the chat table and
writes the chart to docs/analytics-topics.png.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import synthetic  # noqa: E402

from bot.settings import DEFAULT_ORG_FILE  # noqa: E402
from handlers.analytics.chart import render_chart  # noqa: E402
from handlers.analytics.render import legend_text, table_text  # noqa: E402
from handlers.analytics.report import Audience, build_report  # noqa: E402
from handlers.i18n import translator  # noqa: E402
from handlers.org import load_organisation  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import Item, Staff  # noqa: E402
from storage.stats import Period  # noqa: E402

TZ = ZoneInfo("Asia/Sakhalin")
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=TZ)
OUT = ROOT / "docs" / "analytics-topics.png"


async def main() -> None:
    org = load_organisation(DEFAULT_ORG_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/example.sqlite3"
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine, tz=TZ)
        async with sessions() as session, session.begin():
            staff = [Staff(role="executor", block_id=b.id, name=f"Исполнитель {i}",
                           created_at=NOW) for i, b in enumerate(org.blocks)]
            session.add_all(staff)
            await session.flush()
            executors = {s.block_id or "": [s.id] for s in staff}
            rows = list(synthetic.items(org, 640, datetime(2026, 10, 1, tzinfo=TZ),
                                        datetime(2026, 12, 1, tzinfo=TZ), now=NOW,
                                        executors=executors))
            for row in rows:
                row["cluster_id"] = None
            await session.execute(insert(Item), rows,
                                  execution_options={"rollup_rows": rows})
        t = translator("ru")
        async with sessions() as session:
            report = await build_report(session, org, TZ, NOW, org.section("topics"),
                                        Period(date(2026, 11, 1), date(2026, 12, 1)),
                                        Audience(), t)
        await engine.dispose()
    render_chart(report, t, OUT)
    print(report.title, report.period_text, sep="\n")
    print(table_text(report, t))
    print(legend_text(report, t))
    print(f"chart: {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
