"""Refinement options shared by the CLI and the service: configured bounds, scale sources, plain values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlserve.config import Recon3DRefine
from vlserve.recon3d.refine.errors import ScaleError
from vlserve.recon3d.refine.isolated import plain
from vlserve.recon3d.refine.options import (
    CharucoSpec,
    check_marker_mm,
    known_dimension_text,
    parse_charuco,
    scale_source,
)
from vlserve.recon3d.refine.pipeline import refine_options


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
    board = CharucoSpec(5, 7, 30.0, 22.0, "DICT_5X5_100")
    assert scale_source(40, None) == (40.0, None, None)
    assert scale_source(None, "f.diameter=80mm") == (None, "f.diameter=80mm", None)
    assert scale_source(None, None, board) == (None, None, board)
    assert scale_source(None, None, "5x7:30:22:DICT_5X5_100") == (None, None, board)
    for marker, known, charuco in ((None, None, None), (40, "f.diameter=80", None), (40, None, board),
                                   (None, "f.diameter=80", board), (40, "f.diameter=80", board)):
        with pytest.raises(ScaleError, match="exactly one source of scale"):
            scale_source(marker, known, charuco)
    with pytest.raises(ScaleError, match="PARAM=VALUE"):
        scale_source(None, "f.diameter")
    for bad in (0.0, -5.0, math.nan, 5000.0):
        with pytest.raises(ScaleError, match="marker size"):
            check_marker_mm(bad)


def test_plain_makes_reports_json_able() -> None:
    value = {"a": np.float64(1.5), "b": np.arange(3), "c": [np.int64(2), float("nan")], "d": math.inf}
    assert plain(value) == {"a": 1.5, "b": [0, 1, 2], "c": [2, None], "d": None}


def test_charuco_boards_are_parsed_and_bounded() -> None:
    board = parse_charuco("5x7:30:22:DICT_5X5_100")
    assert board == CharucoSpec(5, 7, 30.0, 22.0, "DICT_5X5_100")
    assert (board.corners, board.markers, board.text()) == (24, 17, "5x7:30:22:DICT_5X5_100")
    # the dictionary defaults to DICT_5X5_100 and is read in any case, with or without DICT_
    assert parse_charuco(" 8X11 : 15 : 11.5 ") == CharucoSpec(8, 11, 15.0, 11.5)
    assert parse_charuco("5x7:30:22:4x4_50").dictionary == "DICT_4X4_50"
    assert parse_charuco("5x7:30:22:dict_apriltag_36H11").dictionary == "DICT_APRILTAG_36h11"
    for text, says in (
        ("5x7", "write COLSxROWS:SQUARE_MM:MARKER_MM"),
        ("5x7:30", "write COLSxROWS"),
        ("5x7:a:22", "numbers of mm"),
        ("2x7:30:22", r"squares_x must be a whole number of squares in \[3, 30\], got 2"),
        ("5x31:30:22", "squares_y must be"),
        ("5x7:30:30", "must be smaller than its square"),
        ("5x7:30:0", "marker_mm must be a number of mm > 0"),
        ("5x7:-30:22", "square_mm must be a number of mm > 0"),
        ("5x7:nan:22", "square_mm must be"),
        ("5x7:inf:22", "square_mm must be"),
        ("5x7:300:22", "over 2000 mm long"),
        ("5x7:30:22:DICT_9X9_1", "unknown dictionary"),
        ("12x12:30:22:DICT_4X4_50", "hold 72 markers, DICT_4X4_50 has only 50"),
        ("x" * 10_000, "write COLSxROWS"),
    ):
        with pytest.raises(ScaleError, match=says) as err:
            parse_charuco(text)
        assert err.value.code == 4000 and err.value.details["param"].startswith("charuco")
    with pytest.raises(ScaleError, match="whole number"):
        CharucoSpec(5.5, 7, 30.0, 22.0)  # type: ignore[arg-type]
