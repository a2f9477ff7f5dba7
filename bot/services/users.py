"""Users, roles and languages."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import ROLE_ADMIN, ROLE_COORDINATOR, ROLE_PUBLIC, User
from bot.db.session_state import state_of
from bot.i18n import language_from_telegram
from bot.services import audit

ROLES = (ROLE_PUBLIC, ROLE_COORDINATOR, ROLE_ADMIN)


async def get_or_create(session: AsyncSession, user_id: int, telegram_language: str | None,
                        admins: frozenset[int]) -> User:
    """The user, created on first contact with their app's language; REUNITE_ADMINS are admins."""
    absent = state_of(session).users_absent
    user = None if user_id in absent else await session.get(User, user_id)
    if user is None:
        user = User(id=user_id, role=ROLE_ADMIN if user_id in admins else ROLE_PUBLIC,
                    language=language_from_telegram(telegram_language), language_chosen=False,
                    blocked_bot=False, created_at=datetime.now(UTC))
        session.add(user)
        absent.discard(user_id)
    else:
        if user_id in admins and user.role != ROLE_ADMIN:
            user.role = ROLE_ADMIN
        if not user.language_chosen and telegram_language:
            user.language = language_from_telegram(telegram_language)
        # someone who writes to us again has unblocked the bot
        user.blocked_bot = False
    return user


def is_coordinator(user: User) -> bool:
    return user.role in (ROLE_COORDINATOR, ROLE_ADMIN)


def is_admin(user: User) -> bool:
    return user.role == ROLE_ADMIN


def choose_language(user: User, language: str) -> None:
    user.language = language
    user.language_chosen = True


async def set_role(session: AsyncSession, actor: User, target_id: int, role: str) -> User:
    """Grant ``role`` (or revoke to public); the target need not have talked to the bot yet."""
    target = await session.get(User, target_id)
    if target is None:
        target = User(id=target_id, role=role, language="en", language_chosen=False, blocked_bot=False,
                      created_at=datetime.now(UTC))
        session.add(target)
    else:
        target.role = role
    state_of(session).coordinators = None
    audit.record(session, actor.id, f"role.{role}", f"user:{target_id}")
    return target


# asked by every round of updates: built once, so SQLAlchemy's cache key for them is derived once
# (see tips._LATEST_TIPS)
_GETS_ALERTS = User.role.in_((ROLE_COORDINATOR, ROLE_ADMIN)) & User.blocked_bot.is_(False)
_COORDINATORS = select(User).where(_GETS_ALERTS).order_by(User.id)
_USERS_AMONG = select(User).where(User.id.in_(bindparam("user_ids", expanding=True)))
_USERS_AMONG_AND_COORDINATORS = (select(User).where(User.id.in_(bindparam("user_ids", expanding=True)) | _GETS_ALERTS)
                                 .order_by(User.id))


async def coordinators(session: AsyncSession) -> list[User]:
    """Everyone who receives coordinator alerts privately (when there is no coordinator group);
    asked once per session (a batch of tips asks once; a change of roles forgets it)."""
    state = state_of(session)
    if state.coordinators is None:
        state.coordinators = list(await session.scalars(_COORDINATORS))
    return state.coordinators


async def mark_blocked(session: AsyncSession, user_id: int) -> None:
    user = await session.get(User, user_id)
    if user is not None:
        user.blocked_bot = True
        state_of(session).coordinators = None


async def preload(session: AsyncSession, user_ids: set[int], *, with_coordinators: bool = False) -> list[User]:
    """Load a batch of users at once (and note who is new); with ``with_coordinators``, in the same
    query, everyone :func:`coordinators` would ask for. Keep the returned list so the identity map
    keeps them."""
    statement = _USERS_AMONG_AND_COORDINATORS if with_coordinators else _USERS_AMONG
    found = list(await session.scalars(statement, {"user_ids": list(user_ids)}))
    state = state_of(session)
    state.users_absent = user_ids - {user.id for user in found}
    if with_coordinators:
        state.coordinators = [user for user in found if is_coordinator(user) and not user.blocked_bot]
    return found


async def bootstrap_admins(session: AsyncSession, admins: frozenset[int]) -> None:
    """Make REUNITE_ADMINS admins at start, so they get alerts before they ever write to the bot."""
    for admin_id in admins:
        user = await session.get(User, admin_id)
        if user is None:
            session.add(User(id=admin_id, role=ROLE_ADMIN, language="en", language_chosen=False,
                             blocked_bot=False, created_at=datetime.now(UTC)))
        else:
            user.role = ROLE_ADMIN
