"""Matplotlib set-up shared by every plot emer writes: the Agg backend and a font list that covers
Chinese labels (Noto Sans/Serif CJK where installed, e.g. Debian's fonts-noto-cjk), so CJK text is
drawn with real glyphs instead of boxes. Matplotlib falls back glyph by glyph along the list."""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)
CJK_NAMES = ("NotoSansCJK", "NotoSerifCJK", "SourceHanSans", "WenQuanYi", "wqy")


@functools.cache
def pyplot() -> Any:
    """``matplotlib.pyplot`` on Agg with a CJK-capable fallback font registered (once per process)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    families = []
    for path in sorted(font_manager.findSystemFonts()):
        if any(n.lower() in path.replace("-", "").lower() for n in CJK_NAMES):
            try:
                font_manager.fontManager.addfont(path)
                families.append(font_manager.FontProperties(fname=path).get_name())
            except (OSError, RuntimeError) as err:  # an unreadable font file: skip it
                log.debug("font %s: %s", path, err)
    families = list(dict.fromkeys(families))
    plt.rcParams["font.family"] = ["DejaVu Sans", *families]  # a list of families: per-glyph fallback
    if not families:
        log.info("no CJK font found (install fonts-noto-cjk): Chinese labels will show as boxes")
    return plt


def has_cjk_font() -> bool:
    """Whether a CJK-capable font is registered for plots."""
    return len(pyplot().rcParams["font.family"]) > 1
