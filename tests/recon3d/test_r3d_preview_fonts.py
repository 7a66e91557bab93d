"""PNG previews draw Chinese, Japanese and Korean names in a CJK font, with no warnings."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.recon3d.helpers import FLANGE

pytest.importorskip("matplotlib")
pytest.importorskip("manifold3d")


def title_strip(name: str, tmp_path: Path) -> np.ndarray:
    from vlserve.recon3d import compile_spec, load_spec
    from vlserve.recon3d.exporters.preview import render_preview

    model = compile_spec(load_spec({**FLANGE, "name": name}))
    path = render_preview(model, tmp_path / f"{len(list(tmp_path.iterdir()))}.png", size_px=400)
    return np.asarray(Image.open(path).convert("L"))[:30]  # the title line


def test_cjk_names_render_without_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vlserve.recon3d.exporters.fonts import preview_fonts

    assert any("CJK" in family or "WenQuanYi" in family for family in preview_fonts()), (
        "no CJK font found: apt-get install fonts-noto-cjk (CI installs it)")
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")  # a missing glyph would raise here
        flange, gearbox = title_strip("法兰盘", tmp_path), title_strip("齿轮箱", tmp_path)
        kana = title_strip("フランジ 플랜지", tmp_path)
    assert not [r for r in caplog.records if r.name.startswith(("matplotlib", "vlserve"))]
    # Real glyphs differ from one name to another; missing ones would all be the same boxes.
    assert not np.array_equal(flange, gearbox)
    assert (kana < 128).any()  # something was drawn
