"""Who may use the coordinators' console: one-time login links asked for in the chat, and browser
sessions. Only SHA-256 hashes of links and session ids are stored, so a copy of the database opens
nothing. The role is read from the users table on every request: a session of someone whose role
was revoked ends the moment they next use it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.dml import rows_affected
from bot.db.models import ConsoleLoginToken, ConsoleSession, User
from bot.services import audit, users

LINK_LIFETIME = timedelta(minutes=10)
TOKEN_BYTES = 32


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_token(session_id: str) -> str:
    """The token every change must carry: derived from the session id (never stored, never in a
    cookie), so another site can neither read nor guess it."""
    return hmac.new(session_id.encode(), b"reunite-console-csrf", hashlib.sha256).hexdigest()


def issue_login_token(session: AsyncSession, user: User, now: datetime) -> str:
    """A new one-time login token for ``user`` (a coordinator), valid for LINK_LIFETIME."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(ConsoleLoginToken(token_hash=_digest(token), user_id=user.id, created_at=now,
                                  expires_at=now + LINK_LIFETIME))
    audit.record(session, user.id, "console.link")
    return token


@dataclass(frozen=True)
class NewSession:
    session_id: str  # for the cookie; only its hash is stored
    user: User


async def redeem(session: AsyncSession, token: str, now: datetime) -> NewSession | None:
    """Open a browser session with a login token: once, before it expires, for someone who is still
    a coordinator. None otherwise (used, expired, unknown, role revoked)."""
    if not token or len(token) > 100:
        return None
    digest = _digest(token)
    # one statement, so two browsers opening the same link cannot both win
    used = await rows_affected(
        session, update(ConsoleLoginToken)
        .where(ConsoleLoginToken.token_hash == digest, ConsoleLoginToken.used_at.is_(None),
               ConsoleLoginToken.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False))
    if used != 1:
        return None
    user_id = await session.scalar(select(ConsoleLoginToken.user_id).where(ConsoleLoginToken.token_hash == digest))
    user = await session.get(User, user_id)
    if user is None or not users.is_coordinator(user):
        return None
    session_id = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(ConsoleSession(session_hash=_digest(session_id), user_id=user.id, created_at=now,
                               last_seen_at=now))
    audit.record(session, user.id, "console.login")
    return NewSession(session_id, user)


async def current_user(session: AsyncSession, session_id: str | None, now: datetime,
                       idle: timedelta) -> User | None:
    """The coordinator behind a session cookie, its last use moved to ``now``; None (and the session
    ended) if it was logged out, has been idle longer than ``idle``, or its user is no longer a
    coordinator."""
    if not session_id or len(session_id) > 100:
        return None
    row = await session.scalar(select(ConsoleSession).where(ConsoleSession.session_hash == _digest(session_id),
                                                            ConsoleSession.ended_at.is_(None)))
    if row is None:
        return None
    user = await session.get(User, row.user_id, populate_existing=True)
    if now - row.last_seen_at > idle or user is None or not users.is_coordinator(user):
        row.ended_at = now
        return None
    row.last_seen_at = now
    return user


async def end(session: AsyncSession, session_id: str | None, now: datetime) -> None:
    """Log out: the session is ended for good."""
    if not session_id:
        return
    row = await session.scalar(select(ConsoleSession).where(ConsoleSession.session_hash == _digest(session_id),
                                                            ConsoleSession.ended_at.is_(None)))
    if row is not None:
        row.ended_at = now
        audit.record(session, row.user_id, "console.logout")
