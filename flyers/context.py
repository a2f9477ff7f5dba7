"""What the templates print: every field clipped, formatted and translated, with the fitted sizes."""

from __future__ import annotations

import re
from typing import Any

from .fit import fit_card, fit_poster
from .images import MAX_EXTRA_PHOTOS, Photo, prepare_photos, qr_data_uri
from .labels import HTML_LANG, LABELS, LANGS_OF
from .model import FlyerCase, Lang, as_lang
from .text import (
    Age,
    age_now,
    age_then,
    clean,
    clip_text,
    flyer_date,
    fmt_age,
    fmt_date,
    fmt_height,
    fmt_missing_since,
)

# Per-field length limits in "visual width" units (a CJK character counts 2). The
# layout also clamps lines in CSS; these keep the HTML small and the page count at one.
POSTER_LIMITS = {
    "name": 90, "other_names": 90, "last_seen_place": 150, "build": 60, "hair": 60,
    "eyes": 60, "distinguishing_marks": 170, "clothing": 200, "circumstances": 560,
    "agency_name": 90, "agency_phone": 40, "agency_reference": 40, "family_contact": 60,
}
CARD_LIMITS = {
    "name": 60, "other_names": 50, "last_seen_place": 90, "agency_name": 60,
    "agency_phone": 32, "agency_reference": 30, "family_contact": 40,
}



def resolve_lang(case: FlyerCase, lang: str | None) -> Lang:
    return as_lang(lang or case.language or "en")


def _multi(langs: tuple[str, ...], make) -> list[tuple[str, str]]:
    """``[(html_lang, text), ...]`` for each language, without repeating equal texts."""
    out: list[tuple[str, str]] = []
    for lg in langs:
        text = make(lg)
        if text and all(text != t for _, t in out):
            out.append((HTML_LANG[lg], text))
    return out


def build_context(case: FlyerCase, lang: str, design: str, compact: bool) -> dict[str, Any]:
    """Everything the templates print, already clipped, formatted and translated."""
    langs = LANGS_OF[lang]
    limits = POSTER_LIMITS if design == "poster" else CARD_LIMITS
    if compact:
        limits = {k: max(20, int(v * 0.6)) for k, v in limits.items()}

    def clip(field: str) -> str:
        return clip_text(getattr(case, field), limits.get(field, 120))

    labels = {key: _multi(langs, lambda lg, k=key: LABELS[lg][k]) for key in LABELS["en"]}
    as_of = flyer_date(case)

    name = clip("name") or "—"
    other_names = clip("other_names")

    # Ages: show "age then / age now" only when they differ; otherwise one "Age".
    then, now = age_then(case), age_now(case, as_of)

    def age_parts(a: Age) -> list[tuple[str, str]]:
        parts = _multi(langs, lambda lg: fmt_age(a.years, lg, a.approx))
        # "14 · 14岁" says nothing twice: a bare number serves both readers.
        return parts[:1] if parts[0][1].isdigit() else parts

    ages: list[tuple[str, list[tuple[str, str]]]] = []
    if then and now and int(now.years) != int(then.years):
        if design == "card":
            # The card has room for one line: "41 (3 when missing)" / "41岁（失踪时3岁）".
            def now_and_then(lg: str) -> str:
                age_now = fmt_age(now.years, lg, now.approx)
                age_then = fmt_age(then.years, lg, then.approx)
                return (f"{age_now}（失踪时{age_then}）" if lg == "zh"
                        else f"{age_now} ({age_then} when missing)")
            ages.append(("age_now", _multi(langs, now_and_then)))
        else:
            ages.append(("age_then", age_parts(then)))
            ages.append(("age_now", age_parts(now)))
    elif age := then or now:
        ages.append(("age", age_parts(age)))

    if design == "card" and len(langs) > 1:
        # A bilingual card has no room for the date twice: ISO reads in both languages.
        iso = case.missing_since.date().isoformat()
        if case.missing_since_has_time:
            iso += f" {case.missing_since:%H:%M}"
        missing_since = [("en", iso)]
    else:
        missing_since = _multi(langs, lambda lg: fmt_missing_since(case, lg))

    particulars: list[tuple[str, list[tuple[str, str]] | str]] = []
    if case.sex in ("male", "female"):
        particulars.append(("sex", _multi(langs, lambda lg: LABELS[lg][case.sex])))
    if case.date_of_birth:
        particulars.append(("born", _multi(langs, lambda lg: fmt_date(case.date_of_birth, lg))))
    elif case.birth_year:
        particulars.append(("born", _multi(
            langs, lambda lg: f"{case.birth_year}年" if lg == "zh" else str(case.birth_year))))
    if case.height_cm:
        # One height for both languages in a bilingual flyer: "170 cm (5 ft 7 in)".
        height = _multi(langs[:1], lambda lg: fmt_height(case.height_cm, lg))
        particulars.append(("height", height))
    for key, field in (("build", "build"), ("hair", "hair"), ("eyes", "eyes"),
                       ("marks", "distinguishing_marks"), ("clothing", "clothing")):
        if value := clip(field):
            particulars.append((key, value))

    primary, extras = prepare_photos(case, MAX_EXTRA_PHOTOS if design == "poster" else 0)
    if compact:
        extras = extras[:2]

    def photo_caption(photo: Photo) -> list[tuple[str, str]]:
        """'Age 12' / '12岁'; an age-progressed image says so in every language."""
        out = _multi(langs, lambda lg: LABELS[lg]["age_progressed"]) if photo.age_progressed else []
        if photo.age is not None:
            # Bilingual: one age ("Age 12") is enough under a photo.
            lg = langs[0]
            age = fmt_age(photo.age, lg)
            out.append((HTML_LANG[lg], age if lg == "zh" else f"Age {age}"))
        return out

    circumstances = clip("circumstances") if design == "poster" else ""
    family_contact = clip("family_contact") if case.family_contact_public else ""
    link = case.deep_link_url
    link_text = re.sub(r"^https?://", "", link)

    ctx = {
        "lang": lang,
        "html_lang": HTML_LANG[langs[0]] if len(langs) == 1 else "en",
        "bilingual": len(langs) > 1,
        "compact": compact,
        "L": labels,
        "name": name,
        "other_names": other_names,
        "ages": ages,
        "missing_since": missing_since,
        "last_seen": clip("last_seen_place"),
        "particulars": particulars,
        "circumstances": circumstances,
        "photo": primary,
        "photo_caption": photo_caption(primary) if primary else [],
        "extras": [(p, photo_caption(p)) for p in extras],
        "agency_name": clip("agency_name"),
        "agency_phone": clip("agency_phone"),
        "agency_reference": clip("agency_reference"),
        "family_contact": family_contact,
        "qr": qr_data_uri(link),
        "link_text": link_text if len(link_text) <= 64 else "",
        "code": clean(case.code),
        # Bilingual: an ISO date reads the same in both languages and saves space.
        "flyer_date": (_multi(langs, lambda lg: fmt_date(as_of, lg)) if len(langs) == 1
                       else [("en", as_of.isoformat())]),
    }
    ctx["fit"] = fit_poster(ctx, compact) if design == "poster" else fit_card(ctx, compact)
    return ctx
