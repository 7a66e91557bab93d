"""Refinement options shared by the CLI and the service: configured bounds, scale sources, plain values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlserve.config import Recon3DRefine
from vlserve.recon3d.refine.errors import ScaleError
from vlserve.recon3d.refine.isolated import plain
from vlserve.recon3d.refine.options import check_marker_mm, known_dimension_text, refine_options, scale_source


def test_refine_options_carry_every_configured_bound() -> None:
    cfg = Recon3DRefine(max_photos=20, max_image_size=800, max_features=512, min_registered=4, mapping_seconds=30,
                        fit_seconds=12, fit_evaluations=40, fit_points=300, max_change=0.3)
    options = refine_options(cfg)
    assert (options.sfm.max_photos, options.sfm.max_image_size, options.sfm.max_features,
            options.sfm.min_registered, options.sfm.mapping_seconds) == (20, 800, 512, 4, 30)
    assert (options.fit.seconds, options.fit.max_evaluations, options.fit.max_points,
            options.fit.max_change) == (12, 40, 300, 0.3)


def test_known_dimension_text_and_its_refusals() -> None:
    assert known_dimension_text(" f.diameter ", 80) == "f.diameter=80mm"
    assert known_dimension_text("thickness", 3.175) == "thickness=3.175mm"
    for name, mm in (("", 80), ("a=b", 80), ("a\x00b", 80), ("x" * 201, 80), ("d", 0), ("d", -1), ("d", math.nan),
                     ("d", math.inf), ("d", 2e6)):
        with pytest.raises(ScaleError) as err:
            known_dimension_text(name, mm)
        assert err.value.code == 4000


def test_exactly_one_source_of_scale() -> None:
    assert scale_source(40, None) == (40.0, None)
    assert scale_source(None, "f.diameter=80mm") == (None, "f.diameter=80mm")
    for marker, known in ((None, None), (40, "f.diameter=80")):
        with pytest.raises(ScaleError, match="exactly one source of scale"):
            scale_source(marker, known)
    with pytest.raises(ScaleError, match="PARAM=VALUE"):
        scale_source(None, "f.diameter")
    for bad in (0.0, -5.0, math.nan, 5000.0):
        with pytest.raises(ScaleError, match="marker size"):
            check_marker_mm(bad)


def test_plain_makes_reports_json_able() -> None:
    value = {"a": np.float64(1.5), "b": np.arange(3), "c": [np.int64(2), float("nan")], "d": math.inf}
    assert plain(value) == {"a": 1.5, "b": [0, 1, 2], "c": [2, None], "d": None}
