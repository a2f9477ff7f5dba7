"""Missing-person flyers: the A4 poster (PDF + JPEG) and the square card (JPEG).

Typical use from the bot (never render on the event loop)::

    from flyers import FlyerCase, fingerprint, render_flyers_async

    key = fingerprint(case, "bi")
    if key != stored_key:                      # re-send the cached file_ids otherwise
        files = await render_flyers_async(case, "bi")

See :mod:`flyers.renderer` for the pipeline, :mod:`flyers.pool` for the worker process, and
:mod:`flyers.fonts` for the system fonts and libraries it needs.
"""

from .model import CaseLang, FlyerCase, FlyerFiles, FlyerPhoto, Lang, PhotoKind, Sex, as_lang
from .pool import (
    configure_pool,
    render_flyers_async,
    run_in_worker,
    shutdown_pool,
    warm_up,
)
from .renderer import (
    TEMPLATE_VERSION,
    fingerprint,
    render_card_jpg,
    render_flyers,
    render_poster,
    render_poster_pdf,
)

__all__ = [
    "CaseLang",
    "FlyerCase",
    "FlyerFiles",
    "FlyerPhoto",
    "Lang",
    "PhotoKind",
    "Sex",
    "TEMPLATE_VERSION",
    "as_lang",
    "configure_pool",
    "fingerprint",
    "render_card_jpg",
    "render_flyers",
    "render_flyers_async",
    "render_poster",
    "render_poster_pdf",
    "run_in_worker",
    "shutdown_pool",
    "warm_up",
]
