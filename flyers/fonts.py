"""Check the system libraries and fonts the flyers need.

Flyers render without them, but badly: without a CJK font Chinese text comes out as
boxes ("tofu"), and without HarfBuzz's subsetting library WeasyPrint subsets the huge
CJK font in pure Python (fontTools), about 10 s per Chinese flyer instead of well
under one. ``reunite run`` and ``reunite sandbox`` call :func:`warn_if_missing` at start;
``scripts/system-deps.sh`` installs everything.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

log = logging.getLogger(__name__)

#: Font the templates ask for first (Debian/Ubuntu package ``fonts-noto-cjk``).
CJK_FAMILY = "Noto Sans CJK SC"

#: The command that fixes whatever :func:`missing_system_deps` reports.
SETUP_HINT = (
    "run scripts/system-deps.sh as root, or: apt-get install -y --no-install-recommends "
    "fonts-noto-cjk libharfbuzz-subset0 libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core"
)


def has_harfbuzz_subset() -> bool:
    """True if WeasyPrint found ``libharfbuzz-subset`` (>= 4.1, which it requires)."""
    try:
        from weasyprint.text import ffi
    except (ImportError, OSError):  # Pango itself missing: nothing renders
        return False
    return bool(ffi.harfbuzz_subset) and bool(ffi.harfbuzz.hb_version_atleast(4, 1, 0))


def matched_family(family: str) -> str | None:
    """The family fontconfig picks for ``family`` (``None`` if it cannot be asked)."""
    try:
        from weasyprint.text.ffi import ffi, fontconfig

        config = fontconfig.FcInitLoadConfigAndFonts()
        pattern = fontconfig.FcPatternCreate()
        try:
            fontconfig.FcPatternAddString(pattern, b"family", family.encode())
            fontconfig.FcConfigSubstitute(config, pattern, 0)  # FcMatchPattern
            fontconfig.FcDefaultSubstitute(pattern)
            result = ffi.new("FcResult *")
            match = fontconfig.FcFontMatch(config, pattern, result)
            if match == ffi.NULL:
                return None
            try:
                value = ffi.new("FcChar8 **")
                if fontconfig.FcPatternGetString(match, b"family", 0, value) != 0:
                    return None
                return ffi.string(ffi.cast("char *", value[0])).decode()
            finally:
                fontconfig.FcPatternDestroy(match)
        finally:
            fontconfig.FcPatternDestroy(pattern)
            fontconfig.FcConfigDestroy(config)
    except Exception:  # private WeasyPrint API changed: fall back to the CLI
        if not shutil.which("fc-match"):
            return None
        out = subprocess.run(["fc-match", "-f", "%{family[0]}", family],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None


def missing_system_deps() -> list[str]:
    """Human-readable problems with the flyer setup; an empty list means all is well."""
    problems = []
    if not has_harfbuzz_subset():
        problems.append("libharfbuzz-subset0 is missing: Chinese flyers will take ~10 s each")
    family = matched_family(CJK_FAMILY)
    if family is not None and family != CJK_FAMILY:
        problems.append(f"font {CJK_FAMILY!r} (fonts-noto-cjk) is missing "
                        f"(fontconfig falls back to {family!r}): Chinese text may show as boxes")
    return problems


def warn_if_missing(logger: logging.Logger | None = None) -> bool:
    """Log a warning per problem plus the fix; True if everything is present."""
    problems = missing_system_deps()
    for problem in problems:
        (logger or log).warning("flyers: %s; %s", problem, SETUP_HINT)
    return not problems
