"""Subscriptions: the areas people want appeals for, and which chats a case's broadcast reaches.

An area is a shared point with a radius (5, 25 or 100 km) or a named region the organisation
configures (REUNITE_REGIONS_FILE: a centre and a radius, found by its name or an alias). A case with
a last-seen point reaches every area whose circle covers that point (great-circle distance); a case
without one reaches the named regions its last-seen place names, and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Region
from bot.db.dml import rows_affected
from bot.db.models import Case, Subscriber, User

RADII_KM = (5, 25, 100)
EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE_LATITUDE = 111.2
CHILD_UNDER_YEARS = 18


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = math.radians(lat2 - lat1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def find_region(regions: tuple[Region, ...], text: str) -> Region | None:
    """The configured region ``text`` names (its name or an alias, any case), if any."""
    wanted = text.strip().casefold()
    return next((region for region in regions if wanted in (name.casefold() for name in region.names())), None)


def _region_named_in(regions: tuple[Region, ...], place: str) -> set[str]:
    place = place.casefold()
    return {region.name for region in regions if any(name.casefold() in place for name in region.names())}


def is_child(case: Case) -> bool:
    """Whether the person was under 18 when they went missing (unknown ages count as adults)."""
    if case.age_when_missing is not None:
        return case.age_when_missing < CHILD_UNDER_YEARS
    missing = case.missing_since.date() if case.missing_since else None
    if missing is None:
        return False
    if case.date_of_birth is not None:
        birthday_passed = (missing.month, missing.day) >= (case.date_of_birth.month, case.date_of_birth.day)
        return missing.year - case.date_of_birth.year - (0 if birthday_passed else 1) < CHILD_UNDER_YEARS
    if case.birth_year is not None:
        return missing.year - case.birth_year < CHILD_UNDER_YEARS
    return False


# -- a person's areas ---------------------------------------------------------------------------

def add_point(session: AsyncSession, chat_id: int, latitude: float, longitude: float, radius_km: float,
                    children_only: bool, now: datetime) -> Subscriber:
    area = Subscriber(chat_id=chat_id, latitude=latitude, longitude=longitude, radius_km=radius_km,
                      children_only=children_only, created_at=now)
    session.add(area)
    return area


def add_region(session: AsyncSession, chat_id: int, region: Region, children_only: bool,
                     now: datetime) -> Subscriber:
    area = Subscriber(chat_id=chat_id, region=region.name, children_only=children_only, created_at=now)
    session.add(area)
    return area


async def areas_of(session: AsyncSession, chat_id: int) -> list[Subscriber]:
    """A person's areas, oldest first (the numbers /subscriptions shows and /unsubscribe takes)."""
    return list(await session.scalars(select(Subscriber).where(Subscriber.chat_id == chat_id)
                                      .order_by(Subscriber.id)))


async def remove(session: AsyncSession, chat_id: int, area_ids: list[int]) -> int:
    """Remove some of a person's areas (never someone else's); how many went."""
    return await rows_affected(session, delete(Subscriber).where(Subscriber.chat_id == chat_id,
                                                                 Subscriber.id.in_(area_ids)))


# -- a case's audience --------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipient:
    chat_id: int
    language: str


def _covers(row, regions_by_name: dict[str, Region], point: tuple[float, float] | None,
            named_regions: set[str]) -> bool:
    if row.region is not None:
        region = regions_by_name.get(row.region)
        if region is None:  # no longer configured
            return False
        if point is None:
            return region.name in named_regions
        return distance_km(region.latitude, region.longitude, *point) <= region.radius_km
    return point is not None and distance_km(row.latitude, row.longitude, *point) <= row.radius_km


async def audience(session: AsyncSession, case: Case, regions: tuple[Region, ...]) -> list[Recipient]:
    """Every chat that still receives messages and has an area covering the case's last-seen place,
    once each, in chat order. Areas are filtered in SQL by latitude first, then measured here."""
    point = (case.last_seen_lat, case.last_seen_lon) if case.last_seen_lat is not None \
        and case.last_seen_lon is not None else None
    named = _region_named_in(regions, case.last_seen_place or "") if point is None else set()
    query = (select(Subscriber.chat_id, Subscriber.latitude, Subscriber.longitude, Subscriber.radius_km,
                    Subscriber.region, User.language)
             .join(User, User.id == Subscriber.chat_id)
             .where(User.blocked_bot.is_(False))
             .order_by(Subscriber.chat_id))
    if not is_child(case):
        query = query.where(Subscriber.children_only.is_(False))
    if point is None:
        query = query.where(Subscriber.region.in_(named))
    else:
        band = max(RADII_KM) / KM_PER_DEGREE_LATITUDE + 0.01
        query = query.where(or_(Subscriber.region.is_not(None),
                                and_(Subscriber.latitude >= point[0] - band, Subscriber.latitude <= point[0] + band)))
    regions_by_name = {region.name: region for region in regions}
    recipients: list[Recipient] = []
    for row in await session.execute(query):
        if recipients and recipients[-1].chat_id == row.chat_id:
            continue  # one message per chat, however many of its areas cover the place
        if _covers(row, regions_by_name, point, named):
            recipients.append(Recipient(row.chat_id, row.language))
    return recipients

