"""Settings from the environment, read and validated once at start.

Every variable has a default and is documented in the README; a bad value stops the program with a
message that names the variable, rather than failing later in the middle of a conversation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import overload
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_API_URL = "https://api.telegram.org"
# REUNITE_MATCH_THRESHOLD is a normalised score (bench/FACES.md): different people average about 0,
# a same-person pair of similar age scored 7.5. Below 1, about a sixth of different people would pass:
# most likely a cosine from before (0.29), so it is refused rather than taken
MIN_NORMALISED_FLOOR = 1.0
MAX_NORMALISED_FLOOR = 50.0


class SettingsError(ValueError):
    """A variable of the environment has a value we cannot use."""


@dataclass(frozen=True)
class Region:
    """A named area people can subscribe to by typing its name (REUNITE_REGIONS_FILE)."""

    name: str
    aliases: tuple[str, ...]
    latitude: float
    longitude: float
    radius_km: float

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Settings:
    telegram_bot_token: str | None = None
    telegram_api_url: str = DEFAULT_API_URL
    data_dir: Path = Path("data")
    database_url: str = ""
    admins: frozenset[int] = frozenset()
    coordinator_chat_id: int | None = None
    bot_username: str | None = None
    timezone: str = "UTC"
    user_rate_limit: int = 20
    # messages/s the one pacer sends in all (REUNITE_BROADCAST_RATE): broadcasts take what answers
    # and alerts leave of it
    send_rate: float = 25.0
    regions: tuple[Region, ...] = ()
    # None: the translated default from the message catalogs
    emergency_text: str | None = None
    # expected wrong face-match candidates per tip face the review floor allows (bench/FACES.md)
    wrong_leads_per_face: float = 1.0
    # a fixed review floor in normalised scores instead of the one set by wrong_leads_per_face
    match_threshold: float | None = None
    # tip faces and images are purged this long after they arrived (privacy rule 4)
    tip_retention_days: int = 1825
    # bytes of images one person (not a coordinator) may have stored per day; 0: no limit
    user_daily_media_bytes: int = 100 * 1024 * 1024
    webhook_url: str | None = None
    webhook_secret: str | None = None
    port: int = 8080
    # the coordinators' console (bot/console): its public origin, else the webhook's; "off" disables it
    console_url: str | None = None
    console_enabled: bool = True
    console_idle_minutes: int = 30
    # a tile server for the console's map ({z}/{x}/{y}); without one, points on a plain background
    map_tiles_url: str | None = None

    @property
    def console_origin(self) -> str | None:
        """Where /console is reached from outside: REUNITE_CONSOLE_URL, else the webhook's origin;
        None when the console is off or has neither."""
        if not self.console_enabled:
            return None
        if self.console_url:
            return self.console_url
        if self.webhook_url:
            parts = urlsplit(self.webhook_url)
            return f"{parts.scheme}://{parts.netloc}"
        return None

    @property
    def bot_token(self) -> str:
        """TELEGRAM_BOT_TOKEN, which running the bot needs (the database commands do not)."""
        if not self.telegram_bot_token:
            raise SettingsError("TELEGRAM_BOT_TOKEN is not set")
        return self.telegram_bot_token

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)


@overload
def _int(env: Mapping[str, str], name: str, default: int, minimum: int | None = None) -> int: ...
@overload
def _int(env: Mapping[str, str], name: str, default: None, minimum: int | None = None) -> int | None: ...
def _int(env: Mapping[str, str], name: str, default: int | None, minimum: int | None = None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value <= 0:
        raise SettingsError(f"{name} must be above 0, got {value}")
    return value


def _normalised_score(env: Mapping[str, str], name: str) -> float | None:
    if not env.get(name, "").strip():
        return None
    value = _float(env, name, 0.0, minimum=float("-inf"))
    if not MIN_NORMALISED_FLOOR <= value <= MAX_NORMALISED_FLOOR:
        raise SettingsError(f"{name} is a normalised face score since scores are normalised (bench/FACES.md), "
                            f"between {MIN_NORMALISED_FLOOR:g} and {MAX_NORMALISED_FLOOR:g}, not a cosine; got {value}")
    return value


def _user_ids(env: Mapping[str, str], name: str) -> frozenset[int]:
    ids = set()
    for part in env.get(name, "").replace(" ", "").split(","):
        if not part:
            continue
        if not part.lstrip("-").isdigit():
            raise SettingsError(f"{name} must be comma-separated Telegram user ids, got {part!r}")
        ids.add(int(part))
    return frozenset(ids)


def _regions(env: Mapping[str, str], name: str) -> tuple[Region, ...]:
    """REUNITE_REGIONS_FILE: a JSON list of {"name", "aliases" (optional), "lat", "lon", "radius_km"}."""
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    try:
        entries = json.loads(Path(raw).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise SettingsError(f"{name}: cannot read {raw!r} as JSON ({error})") from None
    if not isinstance(entries, list):
        raise SettingsError(f"{name}: {raw!r} must hold a JSON list of regions")
    regions = []
    for number, entry in enumerate(entries, start=1):
        try:
            aliases = entry.get("aliases") or []
            region = Region(str(entry["name"]).strip(), tuple(str(alias).strip() for alias in aliases),
                            float(entry["lat"]), float(entry["lon"]), float(entry["radius_km"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SettingsError(f"{name}: region {number} needs a name, lat, lon and radius_km "
                                f"(aliases optional)") from None
        if not region.name or not -90 <= region.latitude <= 90 or not -180 <= region.longitude <= 180 \
                or region.radius_km <= 0:
            raise SettingsError(f"{name}: region {number} ({region.name!r}) has an empty name, a point off "
                                f"the map or a radius that is not positive")
        regions.append(region)
    return tuple(regions)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every REUNITE_*, TELEGRAM_*, WEBHOOK_* and PORT variable, check it and fill defaults."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("REUNITE_DATA_DIR", "").strip() or "data")
    database_url = env.get("DATABASE_URL", "").strip() or f"sqlite+aiosqlite:///{data_dir}/reunite.db"
    if database_url.startswith("postgresql://") or database_url.startswith("postgres://"):
        database_url = "postgresql+asyncpg://" + database_url.split("://", 1)[1]
    timezone = env.get("REUNITE_TIMEZONE", "").strip() or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"REUNITE_TIMEZONE is not a known time zone: {timezone!r}") from None
    webhook_url = env.get("WEBHOOK_URL", "").strip() or None
    webhook_secret = env.get("WEBHOOK_SECRET", "").strip() or None
    if webhook_secret and (len(webhook_secret) > 256
                           or not all(c.isascii() and (c.isalnum() or c in "_-") for c in webhook_secret)):
        raise SettingsError("WEBHOOK_SECRET may be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
    console = env.get("REUNITE_CONSOLE", "").strip().lower()
    if console not in ("", "on", "off"):
        raise SettingsError(f"REUNITE_CONSOLE must be on or off, got {console!r}")
    console_url = (env.get("REUNITE_CONSOLE_URL", "").strip().rstrip("/")) or None
    if console_url and urlsplit(console_url).scheme not in ("http", "https"):
        raise SettingsError(f"REUNITE_CONSOLE_URL must start with https:// (or http://), got {console_url!r}")
    username = (env.get("REUNITE_BOT_USERNAME", "").strip().lstrip("@")) or None
    return Settings(
        telegram_bot_token=env.get("TELEGRAM_BOT_TOKEN", "").strip() or None,
        telegram_api_url=(env.get("TELEGRAM_API_URL", "").strip() or DEFAULT_API_URL).rstrip("/"),
        data_dir=data_dir,
        database_url=database_url,
        admins=_user_ids(env, "REUNITE_ADMINS"),
        coordinator_chat_id=_int(env, "REUNITE_COORDINATOR_CHAT_ID", None),
        bot_username=username,
        timezone=timezone,
        user_rate_limit=_int(env, "REUNITE_USER_RATE_LIMIT", 20, minimum=1),
        # REUNITE_SEND_RATE is this variable's older name, still read by the benchmarks' scripts
        send_rate=_float(env, "REUNITE_BROADCAST_RATE", _float(env, "REUNITE_SEND_RATE", 25.0)),
        regions=_regions(env, "REUNITE_REGIONS_FILE"),
        emergency_text=env.get("REUNITE_EMERGENCY_TEXT", "").strip() or None,
        wrong_leads_per_face=_positive(env, "REUNITE_WRONG_LEADS_PER_FACE", 1.0),
        match_threshold=_normalised_score(env, "REUNITE_MATCH_THRESHOLD"),
        tip_retention_days=_int(env, "REUNITE_TIP_RETENTION_DAYS", 1825, minimum=1),
        user_daily_media_bytes=_int(env, "REUNITE_USER_DAILY_MEDIA_MB", 100, minimum=0) * 1024 * 1024,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        port=_int(env, "PORT", 8080, minimum=0),
        console_url=console_url,
        console_enabled=console != "off",
        console_idle_minutes=_int(env, "REUNITE_CONSOLE_IDLE_MINUTES", 30, minimum=1),
        map_tiles_url=env.get("REUNITE_MAP_TILES_URL", "").strip() or None,
    )
