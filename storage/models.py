"""Database models (SQLAlchemy 2, typed). Times are stored as naive UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from handlers.rules.lifecycle import Status


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in Python, naive UTC in the database (portable across dialects)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}  # noqa: RUF012


class Citizen(Base):
    """Personal data of a person who reported something; anonymised on withdrawal."""

    __tablename__ = "citizens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(200))
    postal_address: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    anonymised_at: Mapped[datetime | None]


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    block_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_staff_role_block", "role", "block_id"),)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Account(Base):
    """A messenger identity: (platform, user_id). It links to a citizen and/or a staff record."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(8))
    citizen_id: Mapped[int | None] = mapped_column(ForeignKey("citizens.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    blocked_bot_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    citizen: Mapped[Citizen | None] = relationship(lazy="raise")
    staff: Mapped[Staff | None] = relationship(lazy="raise")

    __table_args__ = (UniqueConstraint("platform", "user_id"),)


class Consent(Base):
    """152-ФЗ consent: when, which policy version, and when withdrawn."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    policy_version: Mapped[str] = mapped_column(String(32))
    given_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    block_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))


class GroupBinding(Base):
    """A group chat bound by a command: the chairman's summary group or a block's group."""

    __tablename__ = "group_bindings"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # "summary" or "block"
    block_id: Mapped[str] = mapped_column(String(64), default="")
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    bound_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    bound_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("purpose", "block_id", "platform"),)


class RegistrationCounter(Base):
    """The last registration number issued in a year (numbers are sequential per year)."""

    __tablename__ = "registration_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class Item(Base):
    """One сообщение, инцидент or обращение."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(32))
    external_number: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(24))
    topic: Mapped[str] = mapped_column(String(64))
    block_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(500))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    post_url: Mapped[str | None] = mapped_column(String(1000))
    citizen_id: Mapped[int | None] = mapped_column(ForeignKey("citizens.id"), index=True)
    reply_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    registered_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    executor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    taken_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    # Clusters of repeated problems: the normalised address and the cluster the item joined.
    place_key: Mapped[str | None] = mapped_column(String(200))
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), index=True)
    no_answer: Mapped[bool] = mapped_column(Boolean, default=False)  # 59-ФЗ art. 11
    # The topic the suggester proposed when the item was registered and its score (0..1), so
    # «how often was the suggestion accepted» is `topic == suggested_topic` over the items.
    suggested_topic: Mapped[str | None] = mapped_column(String(64))
    suggestion_score: Mapped[float | None] = mapped_column(Float)

    received_at: Mapped[datetime]
    registered_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    registration_due: Mapped[datetime | None]
    forward_due: Mapped[datetime | None]
    first_reaction_due: Mapped[datetime | None]
    answer_due: Mapped[datetime | None]
    original_answer_due: Mapped[datetime | None]
    extension_count: Mapped[int] = mapped_column(Integer, default=0)

    first_reaction_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    answer_text: Mapped[str | None] = mapped_column(Text)
    answer_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    draft_answer_text: Mapped[str | None] = mapped_column(Text)
    answer_published_at: Mapped[datetime | None]
    rating: Mapped[int | None] = mapped_column(Integer)
    satisfaction: Mapped[str | None] = mapped_column(String(16))  # yes / partly / no
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    # The satisfaction poll: sent, reminded once, answered, and the optional comment.
    poll_sent_at: Mapped[datetime | None]
    poll_reminded_at: Mapped[datetime | None]
    poll_answered_at: Mapped[datetime | None]
    poll_comment: Mapped[str | None] = mapped_column(Text)
    # Durations from receipt in whole seconds, kept by storage/rollups.py on every flush: the
    # exact medians of the statistics walk an index ordered by them instead of sorting.
    first_reaction_seconds: Mapped[int | None] = mapped_column(Integer)
    answer_seconds: Mapped[int | None] = mapped_column(Integer)

    citizen: Mapped[Citizen | None] = relationship(lazy="raise")
    reply_account: Mapped[Account | None] = relationship(lazy="raise")
    attachments: Mapped[list[Attachment]] = relationship(
        lazy="raise", order_by="Attachment.id", back_populates="item"
    )

    @property
    def status_enum(self) -> Status:
        return Status(self.status)

    __table_args__ = (
        UniqueConstraint("channel", "external_number"),
        Index("ix_items_status_answer_due", "status", "answer_due"),
        Index("ix_items_block_status", "block_id", "status"),
        # Statistics count by the date of receipt (storage/stats.py, handlers/summaries.py).
        Index("ix_items_received", "received_at"),
        Index("ix_items_topic_received", "topic", "received_at"),
        Index("ix_items_channel_received", "channel", "received_at"),
        Index("ix_items_block_received", "block_id", "received_at"),
        # The citizen's own list and the sweeps still look at the moment of creation.
        Index("ix_items_created", "created_at"),
        Index("ix_items_topic_status", "topic", "status"),
        Index("ix_items_topic_place", "topic", "place_key", "received_at"),
        Index("ix_items_topic_latitude", "topic", "latitude", "longitude"),
        Index("ix_items_status_answered", "status", "answered_at"),
        # The daily summary: closed and polled yesterday (answers not yet published: below).
        Index("ix_items_closed", "closed_at"),
        Index("ix_items_poll_answered", "poll_answered_at"),
        # Answers and their publication, of answered items only (a partial index): the
        # summary's count of answers waiting to be published reads just those, not every
        # unanswered item of the channel as the (channel, answer_published_at) index did.
        Index("ix_items_answer_published", "channel", "answer_published_at",
              sqlite_where=sql_text("answer_text IS NOT NULL"),
              postgresql_where=sql_text("answer_text IS NOT NULL")),
        # Exact medians (storage/stats.py): per group, the durations in order, with the moment
        # of receipt in the index so the period filter needs no table look-up.
        Index("ix_items_answer_seconds", "answer_seconds", "received_at"),
        Index("ix_items_topic_answer_seconds", "topic", "answer_seconds", "received_at"),
        Index("ix_items_channel_answer_seconds", "channel", "answer_seconds", "received_at"),
        Index("ix_items_block_answer_seconds", "block_id", "answer_seconds", "received_at"),
        Index("ix_items_reaction_seconds", "first_reaction_seconds", "received_at"),
        Index("ix_items_topic_reaction_seconds", "topic", "first_reaction_seconds",
              "received_at"),
        Index("ix_items_channel_reaction_seconds", "channel", "first_reaction_seconds",
              "received_at"),
        Index("ix_items_block_reaction_seconds", "block_id", "first_reaction_seconds",
              "received_at"),
        # The clusters section is computed from the items (storage/stats.py): everything it
        # reads, in the order of its medians, so ~6% of a year is read from one index.
        Index("ix_items_cluster_stats", "cluster_id", "answer_seconds", "received_at", "status",
              "answer_due", "answered_at", "reopened_count", "rating", "satisfaction",
              "first_reaction_seconds"),
    )


class RollupCounts:
    """What the items of one rollup row add to each count (storage/rollups.py)."""

    topic: Mapped[str] = mapped_column(String(64), primary_key=True)
    block_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(24), primary_key=True)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    reacted: Mapped[int] = mapped_column(Integer, default=0)
    answered_late: Mapped[int] = mapped_column(Integer, default=0)
    reopened: Mapped[int] = mapped_column(Integer, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rated: Mapped[int] = mapped_column(Integer, default=0)
    with_feedback: Mapped[int] = mapped_column(Integer, default=0)
    satisfied: Mapped[int] = mapped_column(Integer, default=0)


class ItemDayStats(RollupCounts, Base):
    """The statistics rollup: items received on one local day with the same topic, block,
    channel, kind and status (storage/rollups.py keeps it in the transaction of every change;
    `mcu stats rebuild` recomputes it)."""

    __tablename__ = "item_day_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)


class ItemMonthStats(RollupCounts, Base):
    """The same rows summed per local month (`month` is its first day): a year reads about
    7,000 of them instead of about 110,000 daily rows."""

    __tablename__ = "item_month_stats"

    month: Mapped[date] = mapped_column(Date, primary_key=True)


class GrowthAlert(Base):
    """The idempotency mark of a growth alert: a topic is announced at most once in 7 days
    (handlers/analytics/growth.py); `day` is the day D of the comparison."""

    __tablename__ = "growth_alerts"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)  # topic or block
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    current: Mapped[int] = mapped_column(Integer)
    baseline: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    alerted_at: Mapped[datetime]


class Cluster(Base):
    """Items of one topic reported near each other within a few weeks: one root cause.

    `alerted_at` is the idempotency mark of the press alert («резонансная тема»): set once,
    when the cluster first reaches the organisation's threshold.
    """

    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime]
    alerted_at: Mapped[datetime | None]


class ItemEvent(Base):
    """Append-only history of an item: who did what, when, from which state to which."""

    __tablename__ = "item_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(24))
    actor_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    actor_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    comment: Mapped[str | None] = mapped_column(Text)


class TopicCorrection(Base):
    """A head moved an item to another block and named its right topic: a labelled example
    for retraining the topic suggester (`mcu topics export-corrections`)."""

    __tablename__ = "topic_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    from_topic: Mapped[str] = mapped_column(String(64))
    to_topic: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    at: Mapped[datetime]


class Attachment(Base):
    """A stored file (photo or document) with enough metadata to re-upload it anywhere."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # report, comment, clarification, answer
    kind: Mapped[str] = mapped_column(String(16))  # photo, document
    path: Mapped[str] = mapped_column(String(500))  # relative to MCU_DATA_DIR
    filename: Mapped[str | None] = mapped_column(String(255))  # a document's original name
    mime: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    source_platform: Mapped[str | None] = mapped_column(String(16))
    source_file_id: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]

    item: Mapped[Item | None] = relationship(lazy="raise", back_populates="attachments")


class DialogState(Base):
    """Where each messenger user is in a dialog, so a restart continues at the same step."""

    __tablename__ = "dialog_states"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime]


class ProcessedUpdate(Base):
    """Update ids already handled: each Telegram update and VK event is processed once."""

    __tablename__ = "processed_updates"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    update_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(index=True)


class OutboxMessage(Base):
    """A durable outbound message; the sender delivers it and marks it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(16))  # citizen, staff, group
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    not_before: Mapped[datetime]  # staff messages wait for working hours
    next_attempt_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # How many visible messages (photo, album, text part…) of this row were delivered: a
    # retry resumes after them, so a part that arrived is never sent twice.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        # The head of each chat's queue: per-chat order among the messages that are due.
        Index("ix_outbox_chat_queue", "platform", "chat_id", "status", "id"),
    )


class FloodCounter(Base):
    """Messages of one user in the current one-minute window, shared by every process."""

    __tablename__ = "flood_counters"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=0)
    warned: Mapped[bool] = mapped_column(Boolean, default=False)


class Lease(Base):
    """A named role that one process holds at a time (the Telegram poller, the scheduler);
    it is renewed while the holder lives and taken over after `expires_at`."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class RateWindow(Base):
    """Messenger rate limits shared by every process that sends (scheduler/shared_limits.py):
    one row per platform (its recent sends) and one short-lived row per recently served chat,
    keyed by a digest of the chat id, deleted a minute after it stops mattering."""

    __tablename__ = "rate_windows"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Epoch seconds after which the row constrains nothing (chat rows are deleted then).
    expires: Mapped[float] = mapped_column(Float, index=True)
