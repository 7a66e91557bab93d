"""Fonts for the PNG preview: DejaVu Sans (matplotlib's own) with a CJK font as fallback, so an
object named ``法兰盘`` is drawn in its own script instead of boxes.

The CJK font is a system one (Debian ``fonts-noto-cjk``; WenQuanYi or Source Han Sans also do).
matplotlib caches the fonts it saw when first run, so one installed later is not in its cache:
the font files are then registered here directly (only those, without rescanning every font).
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

log = logging.getLogger("vlserve.recon3d")

#: In order of preference: the families that cover Chinese, Japanese and Korean.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR",
                "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Droid Sans Fallback")
_CJK_FILES = re.compile(r"NotoSansCJK|SourceHanSans|wqy|DroidSansFallback", re.IGNORECASE)
BASE_FAMILY = "DejaVu Sans"
#: matplotlib's warning for a character no font in the list has (only when no CJK font exists).
MISSING_GLYPH = r"Glyph \d+ .* missing from font"


@functools.cache
def preview_fonts() -> tuple[str, ...]:
    """The font family list for preview text: the base font, then the first CJK family found."""
    from matplotlib import font_manager

    cjk = _known_cjk(font_manager)
    if cjk is None:
        for path in font_manager.findSystemFonts():
            if _CJK_FILES.search(Path(path).name):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # an unreadable file: try the next
                    continue
        cjk = _known_cjk(font_manager)
    if cjk is None:
        log.warning("no CJK font is installed (Debian: apt-get install fonts-noto-cjk): Chinese, Japanese and "
                    "Korean names in PNG previews are drawn as boxes")
        return (BASE_FAMILY,)
    return (BASE_FAMILY, cjk)


def _known_cjk(font_manager: object) -> str | None:
    names = {f.name for f in font_manager.fontManager.ttflist}  # type: ignore[attr-defined]
    return next((family for family in CJK_FAMILIES if family in names), None)
