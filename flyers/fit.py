"""Fitting the poster and the card on one page.

CSS cannot shrink text to fit a box, so font sizes and line clamps for the variable texts are chosen
here from estimated line counts. The numbers mirror poster.css and card.css and only need to be
close: text is also clamped in CSS, and a layout that still spills onto a second page is redone in
the compact layout.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .text import vwidth

_PT = 25.4 / 72  # mm per point
POSTER_FLOW_MM = 234.0  # .top min-height in poster.css: the page above the contact band
POSTER_RIGHT_MM = 95.0  # width of the right column
POSTER_WIDTH_MM = 186.0  # content width
# Particulars that identify someone best keep a line more when space is short.
KEY_PARTICULARS = frozenset({"marks", "clothing"})


def _est_lines(units: float, width_mm: float, pt: float, em: float = 0.52) -> int:
    """Estimated wrapped lines for ``units`` of visual width (see :func:`vwidth`).

    One unit is an average Latin character, about ``em`` (0.52 regular, 0.56 bold) of
    the font size in Noto Sans CJK; a CJK character is two units. 8% is added for
    the space lost at line ends.
    """
    return max(1, math.ceil(units * 1.08 * em * pt * _PT / width_mm))


def _parts_units(parts: list[tuple[str, str]] | str) -> int:
    if isinstance(parts, str):
        return vwidth(parts)
    return sum(vwidth(text) for _, text in parts) + 3 * (len(parts) - 1)


def _pick_size(units: int, width_mm: float, options: Iterable[tuple[float, int]],
               em: float = 0.56) -> tuple[float, int]:
    """First ``(pt, max_lines)`` option whose estimated line count fits, else the last
    one; returns ``(pt, lines)`` with lines clamped to that option's maximum."""
    pt, lines = 12.0, 1
    for pt, max_lines in options:
        lines = _est_lines(units, width_mm, pt, em)
        if lines <= max_lines:
            return pt, lines
        lines = max_lines
    return pt, lines


@dataclass
class PosterFit:
    """Variable sizes for the poster template (points and line counts)."""

    name_pt: float = 44
    name_lines: int = 1
    place_pt: float = 15
    place_lines: int = 3
    row_lines: int = 3
    key_row_lines: int = 3  # marks and clothing: one line more than the others
    circ_pt: float = 10.5
    circ_lines: int = 9


def fit_poster(ctx: dict[str, Any], compact: bool) -> PosterFit:
    fit = PosterFit()
    bi = ctx["bilingual"]
    label_h = 9.5 * _PT * 1.2

    # Name: the largest size that fits on one line, else two (three when tiny).
    options: tuple[tuple[float, int], ...] = ((44, 1), (36, 1), (30, 1), (26, 2), (22, 2), (18, 2), (15, 3))
    fit.name_pt, fit.name_lines = _pick_size(
        vwidth(ctx["name"]), POSTER_WIDTH_MM, options if not compact else ((20, 1), (16, 2)))
    header_h = (27 if compact else 34.5) if bi else (31 if compact else 38.5)
    name_h = fit.name_lines * fit.name_pt * _PT * 1.08 + 9
    if ctx["other_names"]:
        name_h += 13 * _PT * 1.25 + 1
    budget = POSTER_FLOW_MM - header_h - name_h - 3  # 3 mm to spare

    # Right column, top to bottom.
    used = 0.0
    if ctx["ages"]:
        used += label_h * (2 if bi else 1) + 25 * _PT * 1.1 + 3
        if any(len(parts) > 1 for _, parts in ctx["ages"]):
            used += 15 * _PT * 1.1
    used += label_h + 15 * _PT * 1.2 + (12 * _PT * 1.2 if bi else 0) + 2.6
    if ctx["last_seen"]:
        options = ((15, 2), (13, 3), (11.5, 4)) if not compact else ((11.5, 2),)
        fit.place_pt, fit.place_lines = _pick_size(
            vwidth(ctx["last_seen"]), POSTER_RIGHT_MM, options)
        used += label_h + fit.place_lines * fit.place_pt * _PT * 1.2 + 2.6

    def particulars_h(row_clamp: int) -> float:
        if not ctx["particulars"]:
            return 0.0
        height = 6.5
        for key, value in ctx["particulars"]:
            units = _parts_units(ctx["L"][key]) * 1.05 + 2 + _parts_units(value)
            clamp = min(3, row_clamp + 1) if key in KEY_PARTICULARS else row_clamp
            lines = min(clamp, _est_lines(units, POSTER_RIGHT_MM, 10.5))
            height += lines * 10.5 * _PT * 1.25 + 1.6
        return height

    # Circumstances get what is left, at the largest size that fits. Particulars
    # (marks, clothing) matter more for recognising someone, so their rows are
    # clamped harder only if the circumstances would otherwise get under 5 lines.
    circ_units = vwidth(ctx["circumstances"])
    for row_clamp in ((3, 2, 1) if not compact else (1,)):
        fit.row_lines, fit.key_row_lines = row_clamp, min(3, row_clamp + 1)
        remaining = budget - used - particulars_h(row_clamp) - (5.5 + label_h + 0.8)
        if not circ_units:
            break
        for pt in ((10.5, 9.5, 8.5) if not compact else (8.5,)):
            room = int(remaining // (pt * _PT * 1.3))
            need = _est_lines(circ_units, POSTER_RIGHT_MM, pt)
            fit.circ_pt, fit.circ_lines = pt, max(2, min(need, room, 14 if not compact else 4))
            if need <= room:
                break
        if fit.circ_lines >= min(5, _est_lines(circ_units, POSTER_RIGHT_MM, 8.5)):
            break
    return fit


CARD_RIGHT_MM = 59.0  # text column of the card, next to the photo
CARD_FLOW_MM = 81.5  # .top min-height in card.css: the card above its contact band


@dataclass
class CardFit:
    name_pt: float = 24
    name_lines: int = 1
    place_pt: float = 12
    place_lines: int = 2
    show_aka: bool = True


def fit_card(ctx: dict[str, Any], compact: bool) -> CardFit:
    """Sizes for the card's text column (the rest of the card has fixed sizes)."""
    fit = CardFit()
    names = ((24, 1), (20, 2), (16, 2), (13, 3)) if not compact else ((13, 2),)
    fit.name_pt, fit.name_lines = _pick_size(vwidth(ctx["name"]), CARD_RIGHT_MM, names)
    places = ((12, 2), (10.5, 3), (9.5, 4)) if not compact else ((9.5, 2),)
    fit.place_pt, fit.place_lines = _pick_size(vwidth(ctx["last_seen"]), CARD_RIGHT_MM, places)

    # Height of the text column; give up the place's extra lines, then the other
    # names, until it fits beside the photo (CARD_FLOW_MM minus header and padding).
    fact_head = 2 + 7.5 * _PT * 1.25
    value_line = 12 * _PT * 1.18
    budget = CARD_FLOW_MM - (15.2 if ctx["bilingual"] else 16.9) - 4.5 - 1.5
    used = fit.name_lines * fit.name_pt * _PT * 1.08
    for _, parts in ctx["ages"][-1:]:
        used += fact_head + sum(_est_lines(vwidth(t), CARD_RIGHT_MM, 12, 0.56)
                                for _, t in parts) * value_line
    used += fact_head + len(ctx["missing_since"]) * value_line
    aka_h = 10 * _PT * 1.25 + 0.4 if ctx["other_names"] else 0.0
    place_line = fit.place_pt * _PT * 1.18
    while used + aka_h + fact_head + fit.place_lines * place_line > budget:
        if fit.place_lines > 1:
            fit.place_lines -= 1
        elif aka_h:
            aka_h, fit.show_aka = 0.0, False
        else:
            break  # the compact layout takes over
    fit.show_aka = fit.show_aka and bool(aka_h)
    return fit
