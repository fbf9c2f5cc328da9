"""Plots draw Chinese labels with real glyphs where a CJK font is installed (fonts-noto-cjk)."""

from __future__ import annotations

import io
import warnings

import pytest

from core.plots import has_cjk_font, pyplot


def test_chinese_labels_have_glyphs():
    if not has_cjk_font():
        pytest.skip("no CJK font installed (the Makefile installs fonts-noto-cjk where it can)")
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.barh([0, 1], [2, 3])
    ax.set_yticks([0, 1], ["开心", "frustrated 沮丧"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would raise
        fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
