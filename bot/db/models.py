"""Typed SQLAlchemy 2 models. Alembic migrations in ``migrations/`` are the only way the schema changes.

Privacy by construction: nothing here stores a Telegram name, username or phone number. A tipster is a
numeric id (needed to answer them) and a random per-tip alias is all a coordinator ever sees.

One module for the whole schema (about 570 lines), on purpose: the tables refer to each other, and
Alembic's autogenerate and a reader checking a migration against the models both want them in one
place.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    orm_insert_sentinel,
    relationship,
)
from sqlalchemy.types import TypeDecorator

from bot.db import batch_insert
from bot.db.types import NORMALISED_DIM, Embedding


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC time")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class InsertedInBatches:
    """For tables with generated ids that take many rows per transaction (a round of tips): a
    sentinel column lets one INSERT ... RETURNING write them all and match the new ids to the rows.
    Without it SQLite (whose RETURNING order is not guaranteed) gets one INSERT per row: 85 tips
    took 151 statements and 100-200 ms to store under load, with it 4 statements and 35-60 ms.
    :mod:`bot.db.batch_insert` writes them (see :data:`BATCH_INSERTED`)."""

    _sentinel: Mapped[int | None] = orm_insert_sentinel()


# Roles, in increasing power.
ROLE_PUBLIC = "public"
ROLE_COORDINATOR = "coordinator"
ROLE_ADMIN = "admin"


class User(Base):
    """A Telegram user who has talked to the bot: id, role, language and nothing else."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    role: Mapped[str] = mapped_column(String(16), default=ROLE_PUBLIC)
    language: Mapped[str] = mapped_column(String(8), default="en")
    language_chosen: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Case(Base):
    """A missing-person case. Reporting and verification arrive with the cases feature."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending_review", index=True)
    name: Mapped[str] = mapped_column(Text)
    other_names: Mapped[str | None] = mapped_column(Text)
    sex: Mapped[str | None] = mapped_column(String(8))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    age_when_missing: Mapped[float | None] = mapped_column(Float)
    missing_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    missing_since_has_time: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_place: Mapped[str | None] = mapped_column(Text)
    last_seen_lat: Mapped[float | None] = mapped_column(Float)
    last_seen_lon: Mapped[float | None] = mapped_column(Float)
    height_cm: Mapped[int | None] = mapped_column(SmallInteger)
    build: Mapped[str | None] = mapped_column(Text)
    hair: Mapped[str | None] = mapped_column(Text)
    eyes: Mapped[str | None] = mapped_column(Text)
    distinguishing_marks: Mapped[str | None] = mapped_column(Text)
    clothing: Mapped[str | None] = mapped_column(Text)
    circumstances: Mapped[str | None] = mapped_column(Text)
    agency_name: Mapped[str | None] = mapped_column(Text)
    agency_phone: Mapped[str | None] = mapped_column(String(64))
    agency_reference: Mapped[str | None] = mapped_column(Text)
    family_contact: Mapped[str | None] = mapped_column(Text)
    family_contact_public: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str] = mapped_column(String(8), default="en")
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    reported_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    verified_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    deep_link_token: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    # insert order in one flush: the reporting user before their case
    reporter: Mapped[User | None] = relationship(foreign_keys=[reported_by])


# Tip statuses
TIP_NEW = "new"
TIP_USEFUL = "useful"
TIP_DISMISSED = "dismissed"


class Tip(InsertedInBatches, Base):
    """One tip: a tipster's messages, joined by the rules of DESIGN.md flow 1."""

    __tablename__ = "tips"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)
    alias: Mapped[str] = mapped_column(String(40))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    tipster_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(12), default=TIP_NEW)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    last_message_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_team_reply_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    # also tells the unit of work to insert a new user before their first tip in one flush
    tipster: Mapped[User] = relationship()
    entries: Mapped[list[TipEntry]] = relationship(
        back_populates="tip", order_by="TipEntry.id", cascade="all, delete-orphan"
    )
    media: Mapped[list[TipMedia]] = relationship(
        back_populates="tip", order_by="TipMedia.id", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_tips_tipster_last", "tipster_id", "last_message_at"),)


# Who wrote a tip entry
AUTHOR_TIPSTER = "tipster"
AUTHOR_TEAM = "team"


class TipEntry(InsertedInBatches, Base):
    """One message within a tip: the tipster's text or location, or the team's reply."""

    __tablename__ = "tip_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tip_id: Mapped[int] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(8), default=AUTHOR_TIPSTER)
    kind: Mapped[str] = mapped_column(String(12))  # text | photo | location | edit
    text: Mapped[str | None] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # an album arrives as several messages sharing this id; it is one tip with one acknowledgement
    media_group_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    tip: Mapped[Tip] = relationship(back_populates="entries")


class TipMedia(Base):
    """A stored, EXIF-stripped image of a tip; what the EXIF said is kept here for coordinators."""

    __tablename__ = "tip_media"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tip_id: Mapped[int] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("tip_entries.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # pending -> done | no_face | failed: the face worker picks up pending images
    face_status: Mapped[str] = mapped_column(String(10), default="pending", server_default="pending", index=True)
    taken_at: Mapped[str | None] = mapped_column(String(32))  # as the camera wrote it, no zone
    gps_lat: Mapped[float | None] = mapped_column(Float)
    gps_lon: Mapped[float | None] = mapped_column(Float)
    # file_id of our own stripped re-upload, so later coordinator views re-send without uploading
    upload_file_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    tip: Mapped[Tip] = relationship(back_populates="media")
    entry: Mapped[TipEntry | None] = relationship()


class AuditEvent(Base):
    """Who did what to which object, when. Ids only: never message text, photos or tipster identity."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(40))
    object_ref: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class ConversationState(Base):
    """Where a user is in a multi-step flow; in the database so restarts and other workers see it."""

    __tablename__ = "conversation_state"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    flow: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class InboxUpdate(Base):
    """A raw Telegram update, stored before Telegram is told it was received."""

    __tablename__ = "inbox"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # updates with the same key are processed in order, one at a time
    user_key: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_inbox_unprocessed", "processed_at", "update_id"),)


# Outbox priorities: lower is sent first
PRIORITY_ACK = 0
PRIORITY_ALERT = 1
PRIORITY_BULK = 2

# Outbox statuses
OUT_PENDING = "pending"
OUT_SENDING = "sending"
OUT_SENT = "sent"
OUT_FAILED = "failed"
OUT_UNKNOWN = "unknown"


class OutboxMessage(InsertedInBatches, Base):
    """A message waiting to be sent; the one pacer sends these by priority within Telegram's limits."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # JSON of the Bot API parameters
    # a short line that may stand for this message in a digest when the chat is behind
    digest_line: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(SmallInteger, default=PRIORITY_ACK)
    status: Mapped[str] = mapped_column(String(10), default=OUT_PENDING)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    # the tip an acknowledgement belongs to, so a Telegram reply to it joins that tip
    tip_id: Mapped[int | None] = mapped_column(ForeignKey("tips.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(String(200))

    # lets an acknowledgement point at a tip created in the same transaction, before it has an id
    tip: Mapped[Tip | None] = relationship()

    __table_args__ = (
        Index("ix_outbox_pending", "status", "priority", "id"),
        Index("ix_outbox_chat_message", "chat_id", "message_id"),
    )


# Kinds of case photo
PHOTO_ORIGINAL = "original"
PHOTO_AGE_PROGRESSED = "age_progressed"  # only from an authority, and labelled as such


class CasePhoto(Base):
    """A reference photo of a missing person, with their age in it. Stored like tip images."""

    __tablename__ = "case_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    # indexed: whether a file is still needed is asked by its SHA-256 (bot.services.retention)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    age_years: Mapped[float | None] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16), default=PHOTO_ORIGINAL)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    # pending -> done | no_face | failed: the face worker picks up pending photos
    face_status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    added_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


# What became of a family's change to a public case
CHANGE_PENDING = "pending"
CHANGE_APPROVED = "approved"
CHANGE_REJECTED = "rejected"
CHANGE_WITHDRAWN = "withdrawn"  # its case was closed before anyone reviewed it


class CaseChange(Base):
    """A family's change to what the public sees of an active case, held until a coordinator approves
    it (privacy rule 3: nothing is published before a coordinator checked it)."""

    __tablename__ = "case_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    requested_by: Mapped[int] = mapped_column(BigInteger)
    # a particular's key (bot.services.case_fields), or "photos"
    field: Mapped[str] = mapped_column(String(32))
    # JSON: the particular's new column values as case_fields gives them, or the new photos
    proposed: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default=CHANGE_PENDING)
    reviewed_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_case_changes_status_id", "status", "id"),)


class Face(Base):
    """One detected face in a case photo or a tip image, with its L2-normalised embedding."""

    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_photo_id: Mapped[int | None] = mapped_column(ForeignKey("case_photos.id", ondelete="CASCADE"), index=True)
    tip_media_id: Mapped[int | None] = mapped_column(ForeignKey("tip_media.id", ondelete="CASCADE"), index=True)
    # the case a reference face belongs to (null for tip faces), so searches filter without a join
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    det_score: Mapped[float] = mapped_column(Float)
    embedding: Mapped[np.ndarray] = mapped_column(Embedding())
    model_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # A reference face's cohort statistics: the robust mean and spread of its scores against the
    # cohort (bot.faces.normalisation); null until computed, and such a face is not searched yet.
    cohort_mean: Mapped[float | None] = mapped_column(Float)
    cohort_std: Mapped[float | None] = mapped_column(Float)
    cohort_size: Mapped[int | None] = mapped_column(Integer)  # faces in the cohort they came from
    # PostgreSQL only: [embedding / std, -mean / std], searched by inner product (HNSW) for
    # normalised scores; null on SQLite, which searches in process.
    normalised: Mapped[np.ndarray | None] = mapped_column(Embedding(NORMALISED_DIM))
    # A tip face's random draw in [0, 1): the cohort samples the tip faces with the lowest draws, so
    # it is a uniform sample of those stored, and a face purged leaves it (bot.services.cohort).
    cohort_key: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_faces_cohort_key", "cohort_key", sqlite_where=text("tip_media_id IS NOT NULL"),
                            postgresql_where=text("tip_media_id IS NOT NULL")),)


class CohortFace(Base):
    """A face of the first cohort: adult faces of other people from the sample photos shipped with
    the face libraries, embedded as tip faces are (bot.services.cohort), so scores can be normalised
    before any tip arrived. Not personal data of anyone who used the bot."""

    __tablename__ = "cohort_faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))  # the sample photo's file name
    embedding: Mapped[np.ndarray] = mapped_column(Embedding())
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


# Match candidate statuses
MATCH_PENDING = "pending"
MATCH_CONFIRMED = "confirmed_lead"
MATCH_REJECTED = "rejected"


class MatchCandidate(Base):
    """A tip face that looks like a case: a possible lead for a coordinator to confirm or reject."""

    __tablename__ = "match_candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tip_id: Mapped[int] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    tip_face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    case_face_id: Mapped[int | None] = mapped_column(ForeignKey("faces.id", ondelete="SET NULL"))
    similarity: Mapped[float] = mapped_column(Float)  # the normalised score (bot.faces.normalisation)
    rank: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16), default=MATCH_PENDING, index=True)
    reviewer_id: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # the composite image of its match alert, until the alert is sent (then the file is deleted)
    composite_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (UniqueConstraint("tip_face_id", "case_id", name="uq_match_tip_face_case"),)


class FlyerFile(Base):
    """A rendered flyer and, once sent, Telegram's file_id for it: an unchanged case is re-sent, not
    re-rendered. ``fingerprint`` covers everything that shapes the output."""

    __tablename__ = "flyer_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(String(4))  # en | zh | bi
    design: Mapped[str] = mapped_column(String(16))  # poster_jpg | poster_pdf | card_jpg
    fingerprint: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # the file in the media store
    telegram_file_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (UniqueConstraint("case_id", "language", "design", name="uq_flyer_case_lang_design"),)


class Subscriber(Base):
    """One area a person wants appeals for: a shared point with a radius, or a named region from
    REUNITE_REGIONS_FILE. A person may have several; whether they still receive anything is the
    user's ``blocked_bot`` flag (a 403 or a "kicked" my_chat_member sets it, writing again clears it)."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    radius_km: Mapped[float | None] = mapped_column(Float)
    region: Mapped[str | None] = mapped_column(String(64))  # the configured region's name
    children_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


# Broadcast statuses
BROADCAST_DRAFT = "draft"  # its audience size was shown; waiting for the requester's button
BROADCAST_AWAITING_APPROVAL = "awaiting_approval"  # a family's request, for a coordinator
BROADCAST_SENDING = "sending"
BROADCAST_DONE = "done"
BROADCAST_REJECTED = "rejected"
BROADCAST_CANCELLED = "cancelled"
BROADCAST_WITHDRAWN = "withdrawn"  # its case was closed: stopped, recent messages deleted


class Broadcast(Base):
    """A case's card sent to the subscribers whose area covers its last-seen place (``B-XXXXXX``)."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=BROADCAST_DRAFT, index=True)
    requested_by: Mapped[int] = mapped_column(BigInteger)
    approved_by: Mapped[int | None] = mapped_column(BigInteger)
    # the audience size: as shown to the requester, then the number of deliveries once sending
    audience: Mapped[int] = mapped_column(Integer, default=0)
    # JSON {language: SHA-256 of the card in the media store}, rendered when sending starts
    cards: Mapped[str | None] = mapped_column(Text)
    # the outbox row of the requester's progress message, edited as the broadcast goes
    progress_outbox_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


# Delivery statuses
DELIVERY_PENDING = "pending"
DELIVERY_SENDING = "sending"  # written before the call: after a crash it becomes unknown, never re-sent
DELIVERY_SENT = "sent"
DELIVERY_UNKNOWN = "unknown"  # a timeout, a 5xx or a crash mid-call: it may have arrived
DELIVERY_FAILED = "failed"
DELIVERY_BLOCKED = "blocked"
DELIVERY_FINAL = (DELIVERY_SENT, DELIVERY_UNKNOWN, DELIVERY_FAILED, DELIVERY_BLOCKED)


class Delivery(Base):
    """One chat's copy of a broadcast: at most one per (broadcast, chat), whatever areas overlap."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    language: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10), default=DELIVERY_PENDING)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # when the message was taken down again because its case was closed
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        UniqueConstraint("broadcast_id", "chat_id", name="uq_delivery_broadcast_chat"),
        Index("ix_deliveries_status_id", "status", "id"),
        Index("ix_deliveries_broadcast_status", "broadcast_id", "status"),
    )



class ConsoleLoginToken(Base):
    """A one-time link to the coordinators' console, asked for with /console: only its SHA-256 is
    kept, so a copy of the database opens no session."""

    __tablename__ = "console_login_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ConsoleSession(Base):
    """A coordinator's browser session: the cookie's SHA-256, who, and when it was last used."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

# The rows a round of tips writes many of (a new tipster, their tip, its entry, the answer), each
# table in one Core INSERT instead of through the unit of work: bot/db/batch_insert.py
BATCH_INSERTED = (User, Tip, TipEntry, OutboxMessage)
batch_insert.install(BATCH_INSERTED)


class MediaQuota(Base):
    """Bytes of images one person had stored on one day, against REUNITE_USER_DAILY_MEDIA_MB. Only
    today's rows are kept (earlier ones are deleted as the next are written)."""

    __tablename__ = "media_quota"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
