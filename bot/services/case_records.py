"""A line of ``reunite cases import``'s file, read and checked into a :class:`CaseRecord`: the case's
columns checked as /report checks what a family types (bot/services/case_fields.py), its external id
and its photos (paths confined as bot/services/import_files.py says); or a :class:`LineError` saying,
in words for the person running the import, what is wrong with the line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from bot.db.models import PHOTO_AGE_PROGRESSED, PHOTO_ORIGINAL
from bot.services import case_fields, text_input
from bot.services.case_fields import FieldError
from bot.services.import_files import LineError, PhotoFolders, read_import_file

TEXT_FIELDS = {field.key: field for field in case_fields.FIELDS if field.kind in (case_fields.TEXT, case_fields.PHONE)}
KEYS = {*TEXT_FIELDS, "sex", "date_of_birth", "birth_year", "missing_since", "last_seen_lat", "last_seen_lon",
        "height_cm", "language", "external_id", "photos"}
REQUIRED = ("name", "missing_since", "last_seen_place", "photos")
PHOTO_KEYS = {"path", "age", "kind"}
PHOTO_KINDS = (PHOTO_ORIGINAL, PHOTO_AGE_PROGRESSED)
EXTERNAL_ID_LENGTH = 128  # the column's width

# what a shared check's refusal means, said to the person running the import
_REASONS = {
    "field_date_out_of_range": "is in the future or before 1900",
    "field_bad_height": "is not a height between 30 and 272 cm",
    "field_bad_age": "is not an age between 0 and 130 years",
    "field_bad_pin": "is not a position on Earth",
    "field_bad_phone": "is not a phone number (digits, spaces and + ( ) - only)",
    "field_too_long": "is longer than {limit} characters",
}


@dataclass(frozen=True)
class PhotoSource:
    path: Path  # as given (relative ones joined to the import file's folder), for messages
    real_path: Path  # every symbolic link followed: what is checked and read
    age: float | None
    kind: str


@dataclass(frozen=True)
class CaseRecord:
    """One valid line: the case's columns, its external id and its photos."""

    columns: dict
    external_id: str | None
    photos: list[PhotoSource]


# -- reading the file ---------------------------------------------------------------------------

def _is_csv(path: Path, text: str) -> bool:
    if path.suffix.lower() == ".csv":
        return True
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return False
    return not text.lstrip().startswith("{")


def read_lines(path: Path) -> list[tuple[int, dict | LineError]]:
    """(data line number, the line's keys and values, or what is unreadable about it)."""
    text = read_import_file(path)
    lines: list[tuple[int, dict | LineError]] = []
    if _is_csv(path, text):
        for row in csv.DictReader(io.StringIO(text, newline="")):
            if not any(value and value.strip() for value in row.values() if isinstance(value, str)):
                continue  # a blank line
            number = len(lines) + 1
            if None in row:
                lines.append((number, LineError("more cells than the header has columns")))
            else:
                lines.append((number, {key.strip(): value for key, value in row.items() if value not in (None, "")}))
        return lines
    for physical in text.split("\n"):  # not splitlines(): JSON strings may hold U+2028 and friends
        if not physical.strip():
            continue
        number = len(lines) + 1
        try:
            record = json.loads(physical)
        except json.JSONDecodeError as error:
            lines.append((number, LineError(f"not valid JSON: {error.msg} at column {error.colno}")))
            continue
        if not isinstance(record, dict):
            lines.append((number, LineError("a line must be a JSON object")))
        else:
            lines.append((number, record))
    return lines


# -- checking one line --------------------------------------------------------------------------

def _given(record: dict, key: str):
    value = record.get(key)
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _text(record: dict, field: case_fields.Field) -> str | None:
    """A text field, cleaned as everything people type is (bot/services/text_input.py), then checked
    as /report checks it."""
    value = _given(record, field.key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise LineError(f"{field.key} must be text, got {json.dumps(value)}")
    if "\x00" in value:  # PostgreSQL cannot store it
        raise LineError(f"{field.key} contains a NUL character")
    value = text_input.clean_text(value)
    return None if not value.strip() else _checked(field.key, case_fields.text_value, field, value)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LineError(f"{what} must be a number, got {json.dumps(value)}")
    try:
        return float(value)
    except ValueError:
        raise LineError(f"{what} must be a number, got {json.dumps(value)}") from None


def _checked(what: str, check, *args):
    """``check(*args)`` with a shared check's refusal said in words for the import."""
    try:
        return check(*args)
    except FieldError as refusal:
        raise LineError(f"{what} {_REASONS[refusal.key].format(**refusal.values)}") from None


def _missing_since(value, tz: tzinfo, now: datetime) -> dict:
    if not isinstance(value, str):
        raise LineError("missing_since must be an ISO date or datetime")
    try:
        if len(value.strip()) == len("2024-03-14"):
            moment, has_time = datetime.combine(date.fromisoformat(value.strip()), datetime.min.time()), False
        else:
            moment, has_time = datetime.fromisoformat(value.strip()), True
    except ValueError:
        raise LineError(f"missing_since is not an ISO date or datetime: {value!r}") from None
    return _checked("missing_since", case_fields.when_value, moment, has_time, tz, now)


def _birth(record: dict, today: date) -> dict:
    born, year = _given(record, "date_of_birth"), _given(record, "birth_year")
    if born is None and year is None:
        return {}
    day = None
    if born is not None:
        try:
            day = date.fromisoformat(str(born).strip())
        except ValueError:
            raise LineError(f"date_of_birth is not an ISO date: {born!r}") from None
    if year is not None:
        year_number = _number(year, "birth_year")
        if not year_number.is_integer():
            raise LineError(f"birth_year must be a whole year, got {year!r}")
        if day is not None and day.year != int(year_number):
            raise LineError("date_of_birth and birth_year disagree")
        year = int(year_number)
    return _checked("date_of_birth" if day else "birth_year", case_fields.birth_value,
                    day if day is not None else year, today)


def _pin(record: dict) -> dict:
    lat, lon = _given(record, "last_seen_lat"), _given(record, "last_seen_lon")
    if lat is None and lon is None:
        return {}
    if lat is None or lon is None:
        raise LineError("last_seen_lat and last_seen_lon go together")
    return _checked("last_seen_lat/last_seen_lon", case_fields.pin_value, _number(lat, "last_seen_lat"),
                    _number(lon, "last_seen_lon"))


def _choice(record: dict, key: str, allowed: tuple[str, ...]) -> str | None:
    value = _given(record, key)
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise LineError(f"{key} must be one of {', '.join(allowed)}, got {json.dumps(value)}")
    return value.strip().lower()


def _photo_entries(value) -> list[dict]:
    """JSON: a list of objects; CSV: ``path|age|kind;...``."""
    if isinstance(value, str):
        entries = []
        for part in (p for p in value.split(";") if p.strip()):
            cells = [cell.strip() for cell in part.split("|")]
            if len(cells) > 3:
                raise LineError(f"photos: {part!r} has more than path|age|kind")
            entries.append(dict(zip(("path", "age", "kind"), cells, strict=False)))  # age and kind may be left off
        return entries
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise LineError("photos must be a list of {\"path\", \"age\", \"kind\"} objects")
    return value


def _photos(value, folders: PhotoFolders) -> list[PhotoSource]:
    photos = []
    for number, entry in enumerate(_photo_entries(value), start=1):
        unknown = sorted(set(entry) - PHOTO_KEYS)
        if unknown:
            raise LineError(f"photo {number}: unknown key {unknown[0]!r}")
        path = _given(entry, "path")
        if not isinstance(path, str):
            raise LineError(f"photo {number}: path is required")
        age = _given(entry, "age")
        if age is not None:
            age = _checked(f"photo {number}: age", case_fields.check_age, _number(age, f"photo {number}: age"))
        kind = _choice(entry, "kind", PHOTO_KINDS) or PHOTO_ORIGINAL
        given = folders.base / Path(path).expanduser()
        photos.append(PhotoSource(given, folders.checked(given), age, kind))
    if not photos:
        raise LineError("photos: at least one photo is required")
    return photos


def check_line(record: dict, folders: PhotoFolders, tz: tzinfo, now: datetime) -> CaseRecord:
    """One line as a case, or LineError saying what is wrong with it."""
    unknown = sorted(set(record) - KEYS)
    if unknown:
        raise LineError(f"unknown key {unknown[0]!r}")
    missing = [key for key in REQUIRED if _given(record, key) is None]
    if missing:
        raise LineError(f"{missing[0]} is required")
    columns: dict[str, Any] = {key: value for key, field in TEXT_FIELDS.items()
                               if (value := _text(record, field)) is not None}
    columns.update(_missing_since(record["missing_since"], tz, now), **_birth(record, now.astimezone(tz).date()),
                   **_pin(record))
    columns = case_fields.to_columns(columns)
    if (height := _given(record, "height_cm")) is not None:
        columns["height_cm"] = _checked("height_cm", case_fields.check_height, _number(height, "height_cm"))
    columns["sex"] = _choice(record, "sex", case_fields.SEXES)
    columns["language"] = _choice(record, "language", case_fields.CASE_LANGUAGES) or "en"
    external_id = _given(record, "external_id")
    if external_id is not None:
        if isinstance(external_id, bool) or not isinstance(external_id, (str, int)):
            raise LineError("external_id must be text or a whole number")
        external_id = text_input.clean_text(str(external_id)).strip()
        if len(external_id) > EXTERNAL_ID_LENGTH:
            raise LineError(f"external_id is longer than {EXTERNAL_ID_LENGTH} characters")
    return CaseRecord(columns, external_id, _photos(record["photos"], folders))
