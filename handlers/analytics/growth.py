"""Growing topics (decree 2.3, the chairman's duties): which topics grow and how fast.

For day D, a topic's *current* count is the items received in the 7 local days before D
(D-7 … D-1) and its *baseline* the weekly mean of the 4 weeks before those (D-35 … D-8).
It is flagged when all three hold (thresholds in the organisation file, [analytics]):

- current ≥ growth_min_items (5): a handful of reports is not a trend;
- current ≥ growth_ratio × baseline (2×): the rise is large;
- P(X ≥ current) < growth_p_value (0.01) for X ~ Poisson(max(baseline, growth_min_baseline)):
  the rise is unlikely to be chance. The floor keeps a topic that had nothing from being
  "infinitely" surprising.

Counts come from the daily rollup by the date of receipt, so imported items count in the
week the citizen wrote, like everything else in the statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.org import Analytics
from storage.models import ItemDayStats as R

WEEK = 7
BASELINE_WEEKS = 4
SCOPES = {"topic": R.topic, "block": R.block_id}


@dataclass(frozen=True)
class Growth:
    scope: str  # "topic" or "block"
    key: str
    current: int
    baseline: float  # weekly mean of the 4 weeks before
    p_value: float
    flagged: bool

    def as_json(self) -> dict[str, object]:
        return {self.scope: self.key, "current": self.current,
                "baseline": round(self.baseline, 4), "p_value": self.p_value}


def poisson_tail(k: int, lam: float) -> float:
    """P(X ≥ k) for X ~ Poisson(lam), summed term by term from k upwards (no 1 − CDF, which
    loses the small tails this is about). Terms are computed in logarithms, so large k and
    lam do not overflow."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    log_term = k * math.log(lam) - lam - math.lgamma(k + 1)
    total, i = 0.0, k
    while True:
        term = math.exp(log_term)
        total += term
        i += 1
        log_term += math.log(lam) - math.log(i)
        # Past the mode the terms fall geometrically: stop when the rest cannot matter.
        if i > lam and term < total * 1e-17:
            break
    return min(total, 1.0)


def assess(scope: str, key: str, current: int, baseline: float,
           settings: Analytics) -> Growth:
    p_value = poisson_tail(current, max(baseline, settings.growth_min_baseline))
    flagged = (current >= settings.growth_min_items
               and current >= settings.growth_ratio * baseline
               and p_value < settings.growth_p_value)
    return Growth(scope, key, current, baseline, p_value, flagged)


async def growth(session: AsyncSession, settings: Analytics, day: date,
                 scope: str = "topic") -> list[Growth]:
    """Every topic (or block) with items in the 5 weeks before `day`, the flagged first,
    then by the rise."""
    column = SCOPES[scope]
    recent = day - timedelta(days=WEEK)
    first = recent - timedelta(days=WEEK * BASELINE_WEEKS)
    rows = (await session.execute(
        select(column, func.sum(case((R.day >= recent, R.item_count), else_=0)),
               func.sum(case((R.day < recent, R.item_count), else_=0)))
        .where(R.day >= first, R.day < day).group_by(column))).all()
    results = [assess(scope, key, int(current or 0), int(before or 0) / BASELINE_WEEKS,
                      settings) for key, current, before in rows]
    return sorted(results, key=lambda g: (not g.flagged, g.p_value, g.key))


async def weekly_counts(session: AsyncSession, day: date, weeks: int, *,
                        scope: str = "topic", key: str) -> list[tuple[date, int]]:
    """Items of one topic (or block) in each of the `weeks` 7-day windows before `day`, the
    oldest first: the chart of an alert. Windows end at D like the comparison itself."""
    column = SCOPES[scope]
    first = day - timedelta(days=WEEK * weeks)
    rows = (await session.execute(
        select(R.day, func.sum(R.item_count)).where(column == key, R.day >= first, R.day < day)
        .group_by(R.day))).all()
    counts = [0] * weeks
    for received, n in rows:
        counts[(received - first).days // WEEK] += int(n)
    return [(first + timedelta(days=WEEK * i), counts[i]) for i in range(weeks)]
