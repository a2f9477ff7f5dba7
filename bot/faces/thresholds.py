"""Words for a face match's strength, on the normalised score (:mod:`bot.faces.normalisation`).

A normalised score says how far a tip face stands above the reference face's usual scores against
adult faces of other people, in that reference's own spreads; so the same words mean the same for a
toddler's photo and an adult's. Derived by ``bench/face_threshold.py`` for buffalo_s / w600k_mbf
on the packaged photos (bench/FACES.md, "Normalised scores"); a different model pack
(``REUNITE_FACE_MODEL_DIR``) needs its own run.

There is no fixed review floor any more: it follows the coordinators' review load
(:meth:`bot.faces.normalisation.ImpostorTail.floor`, ``REUNITE_WRONG_LEADS_PER_FACE``), unless
``REUNITE_MATCH_THRESHOLD`` sets one. Every candidate is a possible lead that a human verifies; the
words say how much weight it carries.
"""

from __future__ import annotations

from typing import Literal

MatchStrength = Literal["strong", "possible", "weak"]

#: At or above: "possible" match. Above every score of different people measured among the
#: packaged photos (largest 4.05, team-mates in players.jpg; leave-one-out over the seed cohort).
POSSIBLE_MATCH_THRESHOLD = 4.5

#: At or above: "strong" match. Typical of the same person in two photos of similar age
#: (yaoming.jpg as the case photo against his face in players.jpg: 7.0).
STRONG_MATCH_THRESHOLD = 6.0


def match_strength(score: float, threshold: float) -> MatchStrength | None:
    """The word for a normalised score, or ``None`` below the review floor ``threshold``.

    A floor above the "possible" band (many open reference faces) simply leaves no weak candidates.
    """
    if score < threshold:
        return None
    if score >= STRONG_MATCH_THRESHOLD:
        return "strong"
    if score >= POSSIBLE_MATCH_THRESHOLD:
        return "possible"
    return "weak"
