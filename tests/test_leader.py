"""The scheduler's leader election (scheduler/leader.py): one leader at a time; on PostgreSQL
the advisory lock dies with its connection, on SQLite the lease expires; `lead` stops the
role the moment leadership is lost and hands it over when it stops."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from handlers.clock import ManualClock
from scheduler.leader import AdvisoryLockElection, LeaseElection, lead
from storage.db import create_engine
from tests.conftest import make_services
from tests.drills.harness import eventually


async def test_postgres_one_leader_until_its_connection_drops(postgres_url: str) -> None:
    first, second = AdvisoryLockElection(postgres_url), AdvisoryLockElection(postgres_url)
    try:
        assert await first.campaign()
        assert not await second.campaign()
        assert await first.still_leading()
        # The leader's session ends (a crash, a network cut, an administrator's kill).
        engine = create_engine(postgres_url)
        async with engine.connect() as connection:
            await connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'mcu-worker:%' AND pid IN "
                "(SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"))
            await connection.commit()
        await engine.dispose()
        assert not await first.still_leading()
        assert await second.campaign()
        assert not await first.campaign()
    finally:
        await first.close()
        await second.close()


async def test_postgres_a_silent_leader_loses_the_lock_within_the_takeover_bound(
        postgres_url: str) -> None:
    """A leader whose machine froze or was cut off says nothing more: the server ends its
    idle session (idle_session_timeout) and the lock passes on, well inside 30 s."""
    silent, successor = AdvisoryLockElection(postgres_url), AdvisoryLockElection(postgres_url)
    try:
        assert await silent.campaign()
        taken = False
        for _ in range(50):  # a standby's attempts, every half second for 25 s
            if taken := await successor.campaign():
                break
            await asyncio.sleep(0.5)
        assert taken, "the lock did not pass on within 25 s"
        assert not await silent.still_leading()
    finally:
        await silent.close()
        await successor.close()


async def test_sqlite_lease_passes_on_once_it_expires(sqlite_url: str, tmp_path: Path,
                                                      clock: ManualClock) -> None:
    services = await make_services(sqlite_url, tmp_path / "data", clock)
    try:
        first, second = LeaseElection(services, "a"), LeaseElection(services, "b")
        assert await first.campaign()
        assert not await second.campaign()
        clock.advance(seconds=19)
        assert not await second.campaign()
        clock.advance(seconds=2)  # the holder stopped renewing 21 s ago
        assert await second.campaign()
        assert not await first.still_leading()
    finally:
        await services.sessions.kw["bind"].dispose()


async def test_lead_runs_the_role_in_one_process_and_hands_it_over(postgres_url: str) -> None:
    events: list[str] = []

    def role(name: str):  # type: ignore[no-untyped-def]
        async def elected() -> None:
            events.append(f"{name} leads")

        async def deposed() -> None:
            events.append(f"{name} stops")

        return elected, deposed

    elections = {name: AdvisoryLockElection(postgres_url) for name in ("a", "b")}
    tasks = {name: asyncio.create_task(lead(election, *role(name), retry_every=0.05,
                                            check_every=0.05))
             for name, election in elections.items()}
    try:
        await eventually(lambda: len(events) == 1, 10, "one leader")
        await asyncio.sleep(0.3)  # the other keeps trying, and fails
        assert len(events) == 1
        leader = events[0].split()[0]
        other = "b" if leader == "a" else "a"
        tasks[leader].cancel()
        await asyncio.gather(tasks[leader], return_exceptions=True)
        await eventually(lambda: f"{other} leads" in events, 10, "the other took over")
        assert events == [f"{leader} leads", f"{leader} stops", f"{other} leads"]
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for election in elections.values():
            await election.close()


def test_lease_takeover_bound_is_within_30_seconds() -> None:
    from scheduler.leader import LEASE_TTL, RETRY_EVERY

    assert LEASE_TTL + timedelta(seconds=RETRY_EVERY) <= timedelta(seconds=30)
