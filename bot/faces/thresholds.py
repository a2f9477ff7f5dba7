"""Similarity thresholds for face matches (cosine similarity of the 512-d embeddings).

Derived by ``bench/face_threshold.py`` for buffalo_s / w600k_mbf as the product
embeds faces (a tip face alone against case photos' faces averaged with their
mirror images); the measurements and the reasoning are in ``bench/FACES.md``.
A different model pack (``REUNITE_FACE_MODEL_DIR``) needs its own run.

The review threshold is deliberately a low floor: a missed child costs more
than a coordinator's glance at a wrong candidate, and genuine matches across
years of ageing score far below same-age pairs. Every candidate is a possible
lead that a human verifies; the words below say how much weight it carries.
"""

from __future__ import annotations

from typing import Literal

MatchStrength = Literal["strong", "possible", "weak"]

#: Candidates at or above this similarity are shown to coordinators (the
#: ``REUNITE_MATCH_THRESHOLD`` setting overrides it). Between the measured
#: different-person p99 (0.250) and p99.9 (0.324): 0.5 % of such pairs reach it.
#: 0.01 under the 0.30 derived when tip faces were embedded with their mirror
#: images too: same-person scores fell by 0.009 on average without it, while as
#: many different-person pairs reach 0.29 now as reached 0.30 then.
DEFAULT_MATCH_THRESHOLD = 0.29

#: At or above: "possible" match. Above every different-person pair measured (max 0.331).
POSSIBLE_MATCH_THRESHOLD = 0.40

#: At or above: "strong" match. Typical of the same person in two photos of
#: similar age (yaoming.jpg vs players.jpg: 0.621), well clear of different people.
STRONG_MATCH_THRESHOLD = 0.55


def match_strength(
    similarity: float, threshold: float = DEFAULT_MATCH_THRESHOLD
) -> MatchStrength | None:
    """The word for a similarity, or ``None`` below the review threshold.

    ``threshold`` is the configured review floor; raising it above the
    "possible" band simply leaves fewer weak candidates.
    """
    if similarity < threshold:
        return None
    if similarity >= STRONG_MATCH_THRESHOLD:
        return "strong"
    if similarity >= POSSIBLE_MATCH_THRESHOLD:
        return "possible"
    return "weak"
