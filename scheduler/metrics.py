"""Prometheus metrics of every process (`mcu run`, `mcu serve`, `mcu worker`).

Defined once here, so each layer that observes something increments the same object and
/metrics shows one consistent set. Labels never carry chat ids, names or texts.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPDATES_HANDLED = Counter(
    "mcu_updates_handled", "Updates from the messengers handled to the end of their turn",
    ["platform", "outcome"])  # outcome: ok, duplicate, refused, error
TURN_SECONDS = Histogram(
    "mcu_turn_seconds", "Time from an update's arrival to its committed turn",
    ["platform"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
OUTBOX_SENT = Counter("mcu_outbox_sent", "Outbox rows delivered", ["platform"])
OUTBOX_FAILED = Counter(
    "mcu_outbox_delivery_failures", "Failed delivery attempts of outbox rows",
    ["platform", "kind"])  # kind: retry, failed, undeliverable
RATE_LIMITED = Counter(
    "mcu_rate_limited", "Answers «too many requests» (429 / VK error 6, 9) from a messenger",
    ["platform"])
OUTBOX_ROWS = Gauge(
    "mcu_outbox_rows", "Outbox rows by state at the last scrape", ["state"])  # due, held, failed
ITEMS_BY_STATE = Gauge("mcu_items", "Items by status at the last scrape", ["status"])
SWEEP_SECONDS = Histogram(
    "mcu_job_seconds", "Duration of scheduler jobs", ["job"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
SWEEP_FAILURES = Counter("mcu_job_failures", "Scheduler jobs that raised", ["job"])
SCHEDULER_LEADER = Gauge("mcu_scheduler_leader", "1 while this process runs the scheduler")
LAST_UPDATE_AGE = Gauge(
    "mcu_last_update_age_seconds", "Seconds since the last update (poll or webhook) arrived",
    ["platform"])
