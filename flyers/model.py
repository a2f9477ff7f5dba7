"""Plain data passed into the flyer renderer.

No database rows, no Telegram objects: the caller (a service) copies what a flyer
shows into these dataclasses. Everything here must be picklable, because rendering
runs in a worker process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, get_args

Lang = Literal["en", "zh", "bi"]
"""Flyer language: English, Simplified Chinese, or both (bilingual)."""
LANGS: tuple[Lang, ...] = get_args(Lang)

CaseLang = Literal["en", "zh"]
"""The language of a case's own particulars."""

Sex = Literal["male", "female", "unknown"]

PhotoKind = Literal["original", "age_progressed"]


def as_lang(value: str) -> Lang:
    """``value`` as a flyer language; ValueError if it is not one."""
    for lang in LANGS:
        if value == lang:
            return lang
    raise ValueError(f"unknown flyer language {value!r} (expected en, zh or bi)")


@dataclass(frozen=True)
class FlyerPhoto:
    """One photo of the missing person.

    ``image`` is the encoded file (JPEG or PNG; other formats Pillow reads work too).
    ``age`` is the person's age in years when the photo was taken (may be fractional).
    ``kind == "age_progressed"`` is an authority's age-progressed image; the flyer
    labels it as such.
    """

    image: bytes
    age: float | None = None
    kind: PhotoKind = "original"
    primary: bool = False


@dataclass(frozen=True)
class FlyerCase:
    """The particulars of one case, as printed on its flyers.

    Every optional field may be ``None`` or empty; the flyer leaves its line out.
    ``missing_since`` should be timezone-aware and already in the zone to print
    (the renderer prints its wall-clock time as given). ``as_of`` is the day the
    flyer is made: it is printed as the date of the flyer and used for "age now";
    ``None`` means today (so the fingerprint, too, changes once a day).
    """

    code: str
    name: str
    missing_since: datetime
    last_seen_place: str
    deep_link_url: str
    other_names: str | None = None
    sex: Sex | None = None
    date_of_birth: date | None = None
    birth_year: int | None = None
    age_when_missing: float | None = None
    missing_since_has_time: bool = False
    height_cm: float | None = None
    build: str | None = None
    hair: str | None = None
    eyes: str | None = None
    distinguishing_marks: str | None = None
    clothing: str | None = None
    circumstances: str | None = None
    agency_name: str | None = None
    agency_phone: str | None = None
    agency_reference: str | None = None
    family_contact: str | None = None
    family_contact_public: bool = False
    language: CaseLang = "en"
    photos: list[FlyerPhoto] = field(default_factory=list)
    as_of: date | None = None


@dataclass(frozen=True)
class FlyerFiles:
    """The rendered flyers: the A4 poster as PDF (print) and JPEG (chat), and the
    square card JPEG (broadcasts and sharing)."""

    poster_pdf: bytes
    poster_jpg: bytes
    card_jpg: bytes
