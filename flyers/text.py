"""Text on a flyer: cleaning and clipping free text, and ages, dates and heights in each language."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .labels import EN_MONTHS
from .model import FlyerCase

_WS_RE = re.compile(r"\s+")
# C0/C1 controls other than whitespace: they draw as boxes and have no place on paper.
_CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Pictographic emoji (with skin tones, ZWJ sequences and flag tags), and the emoji
# presentation selector. No installed font draws them (a colour emoji font would,
# but WeasyPrint re-parses its 10 MB with fontTools on every render, ~200 ms), and a
# poster is better without them than with boxes. Symbols in U+2600-27BF stay: DejaVu
# draws them. ZWJ is removed only inside emoji sequences: Arabic and Indic text need it.
_EMOJI_RE = re.compile(
    "[\U0001F000-\U0001FAFF](?:[\U0001F3FB-\U0001F3FF\uFE0F\U000E0020-\U000E007F]"
    "|\u200D[\U0001F000-\U0001FAFF\u2600-\u27BF]\uFE0F?)*|\uFE0F")


def vwidth(text: str) -> int:
    """Visual width: East Asian wide/fullwidth characters count 2, others 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def clean(value: Any) -> str:
    """Normalise a free-text field to one line of text ('' for None)."""
    if value is None:
        return ""
    text = _EMOJI_RE.sub("", _CTRL_RE.sub("", str(value)))
    return _WS_RE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def clip_text(value: Any, limit: int) -> str:
    """Clean ``value`` and cut it to ``limit`` visual units, ending with an ellipsis.

    Cuts at a word boundary when one is near, so a truncated line reads naturally.
    """
    text = clean(value)
    if vwidth(text) <= limit:
        return text
    out, width = [], 0
    for ch in text:
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if width > limit - 1:
            break
        out.append(ch)
    cut = "".join(out)
    space = cut.rfind(" ")
    if space > len(cut) * 0.7:
        cut = cut[:space]
    # Do not leave a dangling combining mark or joiner at the cut.
    cut = cut.rstrip(" ,;:.-\u200d\ufe0f")
    while cut and unicodedata.combining(cut[-1]):
        cut = cut[:-1]
    return cut + "…"


# --------------------------------------------------------------------------------------
# Ages and dates
# --------------------------------------------------------------------------------------


def months_between(start: date, end: date) -> int:
    """Whole months from ``start`` to ``end`` (negative if ``end`` is earlier)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day:
        months -= 1
    return months


@dataclass(frozen=True)
class Age:
    years: float
    approx: bool = False


def age_then(case: FlyerCase) -> Age | None:
    missing = case.missing_since.date()
    if case.date_of_birth:
        return Age(max(0, months_between(case.date_of_birth, missing)) / 12)
    if case.age_when_missing is not None:
        return Age(max(0.0, float(case.age_when_missing)))
    if case.birth_year:
        return Age(max(0, missing.year - case.birth_year), approx=True)
    return None


def age_now(case: FlyerCase, as_of: date) -> Age | None:
    if case.date_of_birth:
        return Age(max(0, months_between(case.date_of_birth, as_of)) / 12)
    if case.birth_year:
        return Age(max(0, as_of.year - case.birth_year), approx=True)
    if case.age_when_missing is not None:
        elapsed = max(0, months_between(case.missing_since.date(), as_of)) / 12
        # Age then is usually whole years, so "now" may be a year off: say "about".
        return Age(float(case.age_when_missing) + elapsed, approx=elapsed >= 1)
    return None


def fmt_age(age: float, lang: str, approx: bool = False) -> str:
    """'37' / '37岁'; children under 3 get months ('2 years 8 months' / '2岁8个月')."""
    total_months = int(math.floor(age * 12 + 1e-6))
    years, months = divmod(total_months, 12)
    if lang == "zh":
        if years == 0:
            text = f"{months}个月"
        elif years < 3 and months:
            text = f"{years}岁{months}个月"
        else:
            text = f"{years}岁"
        return f"约{text}" if approx else text
    if years == 0:
        text = f"{months} month" + ("" if months == 1 else "s")
    elif years < 3 and months:
        text = f"{years} year{'' if years == 1 else 's'} {months} month{'' if months == 1 else 's'}"
    else:
        text = str(years)
    return f"about {text}" if approx else text


def fmt_date(d: date, lang: str) -> str:
    if lang == "zh":
        return f"{d.year}年{d.month}月{d.day}日"
    return f"{d.day} {EN_MONTHS[d.month - 1]} {d.year}"


def fmt_missing_since(case: FlyerCase, lang: str) -> str:
    moment = case.missing_since
    text = fmt_date(moment.date(), lang)
    if case.missing_since_has_time:
        sep = " " if lang == "zh" else ", "
        text += f"{sep}{moment:%H:%M}"
    return text


def fmt_height(cm: float, lang: str) -> str:
    cm_int = int(round(cm))
    if lang == "zh":
        return f"{cm_int}厘米"
    inches = round(cm / 2.54)
    return f"{cm_int} cm ({inches // 12} ft {inches % 12} in)"


def flyer_date(case: FlyerCase) -> date:
    """The flyer's date: ``case.as_of``, else today in the zone of ``missing_since``."""
    if case.as_of is not None:
        return case.as_of
    return datetime.now(case.missing_since.tzinfo).date()
