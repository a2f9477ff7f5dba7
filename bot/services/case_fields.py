"""The particulars of a case, one definition each, shared by /report, /edit and the import so that a
value means the same wherever it comes from.

A family types on a phone, so reading is forgiving ("162 cm", "1.62 m", "2009", "14.3.2024 15:30",
"2024年3月14日"). Parsed values are JSON-ready (a report in progress lives in the database as JSON);
:func:`to_columns` turns them into ``Case`` column values.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo

from bot.i18n import LANGUAGES as CATALOG_LANGUAGES
from bot.i18n import t

# Free-text limits: generous (the flyer fits long text itself) but bounded.
SHORT_TEXT = 500
LONG_TEXT = 3000
PHONE_TEXT = 64  # the agency_phone column's width
OLDEST_YEAR = 1900
MAX_AGE_YEARS = 130

# Kinds of field: how a value is given and read
TEXT = "text"
PHONE = "phone"  # text of digits, spaces and + ( ) - only
CHOICE = "choice"
BIRTH = "birth"
WHEN = "when"
PIN = "pin"
HEIGHT = "height"


class FieldError(ValueError):
    """A value we cannot use; ``key`` is a message key explaining why, ``values`` fill it in."""

    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class Field:
    key: str  # names the conversation step and the field's messages
    kind: str = TEXT
    required: bool = False
    max_length: int = SHORT_TEXT
    columns: tuple[str, ...] = ()  # the Case columns it sets; () means the column named ``key``
    choices: tuple[tuple[str, object], ...] = ()  # (choice name, stored value) for CHOICE fields
    asked_if: str | None = None  # asked in /report only when this column has a value

    @property
    def targets(self) -> tuple[str, ...]:
        return self.columns or (self.key,)


NAME = Field("name", required=True)
OTHER_NAMES = Field("other_names")
SEX = Field("sex", CHOICE, choices=(("male", "male"), ("female", "female"), ("unknown", "unknown")))
BIRTH_DATE = Field("birth", BIRTH, columns=("date_of_birth", "birth_year"))
MISSING_SINCE = Field("missing_since", WHEN, required=True, columns=("missing_since", "missing_since_has_time"))
LAST_SEEN_PLACE = Field("last_seen_place", required=True, max_length=LONG_TEXT)
LAST_SEEN_PIN = Field("last_seen_pin", PIN, columns=("last_seen_lat", "last_seen_lon"))
HEIGHT_CM = Field("height", HEIGHT, columns=("height_cm",))
BUILD = Field("build")
HAIR = Field("hair")
EYES = Field("eyes")
MARKS = Field("distinguishing_marks", max_length=LONG_TEXT)
CLOTHING = Field("clothing", max_length=LONG_TEXT)
CIRCUMSTANCES = Field("circumstances", max_length=LONG_TEXT)
AGENCY_NAME = Field("agency_name")
AGENCY_PHONE = Field("agency_phone", PHONE, max_length=PHONE_TEXT)
AGENCY_REFERENCE = Field("agency_reference")
FAMILY_CONTACT = Field("family_contact")
# default no: a family that fled abuse must not find its phone number on a wall
FAMILY_CONTACT_PUBLIC = Field("family_contact_public", CHOICE, required=True,
                              choices=(("no", False), ("yes", True)), asked_if="family_contact")
LANGUAGE = Field("language", CHOICE, required=True, choices=(("en", "en"), ("zh", "zh")))

# in the order /report asks them
FIELDS = (NAME, OTHER_NAMES, SEX, BIRTH_DATE, MISSING_SINCE, LAST_SEEN_PLACE, LAST_SEEN_PIN, HEIGHT_CM,
          BUILD, HAIR, EYES, MARKS, CLOTHING, CIRCUMSTANCES, AGENCY_NAME, AGENCY_PHONE, AGENCY_REFERENCE,
          FAMILY_CONTACT, FAMILY_CONTACT_PUBLIC, LANGUAGE)
BY_KEY = {field.key: field for field in FIELDS}

SEXES = tuple(name for name, _ in SEX.choices)  # each stored as its name
CASE_LANGUAGES = tuple(name for name, _ in LANGUAGE.choices)


# -- reading what people type -------------------------------------------------------------------

_PHONE_NUMBER = re.compile(r"[0-9 +()\-]*[0-9][0-9 +()\-]*")


def text_value(field: Field, text: str) -> str:
    """Free text, trimmed; empty or longer than the field allows is refused. A phone number may have
    digits, spaces and + ( ) - only (full-width ones, as a Chinese keyboard may type them, become
    plain): anything else could make it read differently on a flyer than it dials."""
    value = text.strip()
    if field.kind == PHONE:
        value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        raise FieldError("field_empty")
    if len(value) > field.max_length:
        raise FieldError("field_too_long", limit=field.max_length)
    if field.kind == PHONE and not _PHONE_NUMBER.fullmatch(value):
        raise FieldError("field_bad_phone")
    return value


_NUMBER = r"(\d+(?:[.,]\d+)?)"


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def parse_height(text: str) -> int:
    """Centimetres from "162", "162 cm", "1.62 m", "1m62" or 5'4"."""
    cleaned = text.strip().lower().replace("厘米", "cm").replace("公分", "cm").replace("米", "m")
    if feet := re.fullmatch(r"(\d)\s*(?:'|ft|feet)\s*(?:(\d{1,2})\s*(?:\"|''|in|inches)?)?", cleaned):
        centimetres = int(feet.group(1)) * 30.48 + int(feet.group(2) or 0) * 2.54
    elif metres := re.fullmatch(r"(\d)\s*m\s*(\d{2})", cleaned):
        centimetres = int(metres.group(1)) * 100 + int(metres.group(2))
    elif number := re.fullmatch(_NUMBER + r"\s*(cm|m)?", cleaned):
        value = _number(number.group(1))
        centimetres = value * 100 if number.group(2) == "m" or value < 3 else value
    else:
        raise FieldError("field_bad_height")
    return check_height(centimetres)


def check_height(centimetres: float) -> int:
    if not 30 <= centimetres <= 272:
        raise FieldError("field_bad_height")
    return round(centimetres)


def parse_age(text: str) -> float:
    """Years in a photo: "7", "2.5", "7 years", "age 7", "aged 7 yo", "7岁", "18 months", "18个月", "年龄7岁"."""
    cleaned = text.strip().lower()
    match = re.fullmatch(r"(?:(?:age|aged|at|年龄|年齡)\s*:?\s*)?" + _NUMBER
                         + r"\s*(years?|yrs?|yo|y|岁|周岁|months?|mos?|个月|月)?(?:\s*old)?", cleaned)
    if not match:
        raise FieldError("field_bad_age")
    value = _number(match.group(1))
    if match.group(2) and match.group(2)[0] in "m个月":
        value /= 12
    return check_age(value)


def check_age(years: float) -> float:
    if not 0 <= years <= MAX_AGE_YEARS:
        raise FieldError("field_bad_age")
    return round(years, 2)


_YMD = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_DMY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")  # day first only with dots: 3/4/2024 is ambiguous
_TIME = re.compile(r"[tT,\s]*(\d{1,2})\s*(?:[:：]\s*(\d{2}))?\s*(am|pm|点|时)?\s*(?:\d{1,2}\s*分)?")


def _date_and_rest(text: str) -> tuple[date, str]:
    text = text.strip()
    if match := _YMD.match(text):
        year, month, day = (int(g) for g in match.groups())
    elif match := _DMY.match(text):
        day, month, year = (int(g) for g in match.groups())
    else:
        raise FieldError("field_bad_date")
    try:
        return date(year, month, day), text[match.end():]
    except ValueError:
        raise FieldError("field_bad_date") from None


def _time_of(rest: str) -> time | None:
    if not rest.strip():
        return None
    match = _TIME.fullmatch(rest)
    if not match or (match.group(2) is None and match.group(3) is None):
        raise FieldError("field_bad_date")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if match.group(3) == "pm" and hour < 12:
        hour += 12
    elif match.group(3) == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        raise FieldError("field_bad_date")
    return time(hour, minute)


def parse_when(text: str, tz: tzinfo, now: datetime) -> dict:
    """Missing since: a date, and the time if known, in ``tz``; not in the future."""
    day, rest = _date_and_rest(text)
    at = _time_of(rest)
    return when_value(datetime.combine(day, at or time(0, 0)), at is not None, tz, now)


def when_value(moment: datetime, has_time: bool, tz: tzinfo, now: datetime) -> dict:
    """The columns of 'missing since'; a time without an offset is in ``tz``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    if moment.year < OLDEST_YEAR or moment > now:
        raise FieldError("field_date_out_of_range")
    return {"missing_since": moment.astimezone(UTC).isoformat(), "missing_since_has_time": has_time}


def parse_birth(text: str, today: date) -> dict:
    """A date of birth, or only the year."""
    cleaned = text.strip().rstrip("年")
    if re.fullmatch(r"\d{4}", cleaned):
        return birth_value(int(cleaned), today)
    day, rest = _date_and_rest(cleaned)
    if rest.strip():
        raise FieldError("field_bad_date")
    return birth_value(day, today)


def birth_value(born: date | int, today: date) -> dict:
    """A day of birth, or only its year."""
    if isinstance(born, date):
        if not date(OLDEST_YEAR, 1, 1) <= born <= today:
            raise FieldError("field_date_out_of_range")
        return {"date_of_birth": born.isoformat(), "birth_year": born.year}
    if not OLDEST_YEAR <= born <= today.year:
        raise FieldError("field_date_out_of_range")
    return {"date_of_birth": None, "birth_year": born}


def pin_value(latitude: float, longitude: float) -> dict:
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise FieldError("field_bad_pin")
    return {"last_seen_lat": latitude, "last_seen_lon": longitude}


def parse_pin(text: str) -> dict:
    """Coordinates typed as "48.8584, 2.2945" (a shared location pin is read directly)."""
    match = re.fullmatch(r"\s*(-?\d{1,3}(?:\.\d+)?)\s*[,;\s]\s*(-?\d{1,3}(?:\.\d+)?)\s*", text)
    if not match:
        raise FieldError("field_bad_pin")
    return pin_value(float(match.group(1)), float(match.group(2)))


def choice_value(field: Field, choice: str) -> dict:
    """The value of the button named ``choice``, or of a button label typed instead, in any language."""
    typed = choice.strip().casefold()
    for name, value in field.choices:
        labels = {t(language, f"choice_{field.key}_{name}").casefold() for language in CATALOG_LANGUAGES}
        if typed == name or typed in labels:
            return {field.targets[0]: value}
    raise FieldError("field_pick_button")


def parse(field: Field, text: str, tz: tzinfo, now: datetime) -> dict:
    """The column values ``text`` gives ``field`` (JSON-ready); FieldError if it cannot."""
    if field.kind in (TEXT, PHONE):
        return {field.key: text_value(field, text)}
    if field.kind == CHOICE:
        return choice_value(field, text)
    if field.kind == BIRTH:
        return parse_birth(text, now.astimezone(tz).date())
    if field.kind == WHEN:
        return parse_when(text, tz, now)
    if field.kind == PIN:
        return parse_pin(text)
    return {"height_cm": parse_height(text)}


def cleared(field: Field) -> dict:
    """The column values of a skipped or removed (optional) field."""
    return dict.fromkeys(field.targets)


def to_columns(values: dict) -> dict:
    """JSON-ready values -> Case column values (ISO strings become dates and datetimes)."""
    columns = dict(values)
    if columns.get("date_of_birth"):
        columns["date_of_birth"] = date.fromisoformat(columns["date_of_birth"])
    if columns.get("missing_since"):
        columns["missing_since"] = datetime.fromisoformat(columns["missing_since"])
    return columns


def has_value(columns: dict, field: Field) -> bool:
    return any(columns.get(column) not in (None, "") for column in field.targets)


def display(field: Field, columns: dict, language: str, tz: tzinfo) -> str | None:
    """How a field's value reads to a person (None when it has none); ``columns`` as in a Case."""
    if not has_value(columns, field):
        return None
    if field.kind == CHOICE:
        value = columns[field.targets[0]]
        return next(t(language, f"choice_{field.key}_{name}") for name, choice in field.choices if choice == value)
    if field.kind == BIRTH:
        born = columns.get("date_of_birth")
        return born.isoformat() if born else str(columns["birth_year"])
    if field.kind == WHEN:
        local = columns["missing_since"].astimezone(tz)
        return local.strftime("%Y-%m-%d %H:%M" if columns.get("missing_since_has_time") else "%Y-%m-%d")
    if field.kind == PIN:
        return f"{columns['last_seen_lat']:.5f}, {columns['last_seen_lon']:.5f}"
    if field.kind == HEIGHT:
        return f"{columns['height_cm']} cm"
    return columns[field.key]


def case_columns(case) -> dict:
    """A case's particulars by column name, the shape :func:`display` reads."""
    return {column: getattr(case, column) for field in FIELDS for column in field.targets}


def particulars(case, language: str, tz: tzinfo) -> list[tuple[str, str]]:
    """(field key, how its value reads) for every field of ``case`` that has a value, in order."""
    columns = case_columns(case)
    return [(field.key, value) for field in FIELDS if (value := display(field, columns, language, tz)) is not None]
