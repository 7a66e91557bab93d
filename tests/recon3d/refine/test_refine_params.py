"""Which numbers of a spec refinement may change, and how they are named and written back."""

from __future__ import annotations

import pytest

from vlserve.recon3d.refine.errors import ScaleError
from vlserve.recon3d.refine.params import apply_values, parse_known_dimension, spec_parameters

FLANGE = {
    "spec_version": "1.0",
    "name": "flange",
    "units": "cm",
    "parts": [
        {"id": "f", "template": "flange", "params": {"diameter": 8, "thickness": 1.2, "bolt_count": 6}},
        {
            "id": "pins",
            "shape": "cylinder",
            "size": {"diameter": 0.4, "height": 1},
            "position": [0, 0, 1],
            "pattern": {"kind": "circular", "count": 3, "radius": 1.5},
        },
        {"id": "tab", "shape": "extrude", "size": {"polygon": [[4, -1], [6, -1], [6, 1]], "height": 1.2}},
    ],
}


def test_lengths_positions_patterns_and_outlines_are_parameters() -> None:
    data, params = spec_parameters(FLANGE)
    names = {p.name: p for p in params}
    assert names["f.diameter"].value == 8 and not names["f.diameter"].assumed
    # the template's own assumptions become explicit, fittable values (in spec units)
    assert names["f.bore_size"].assumed and names["f.bore_size"].value == pytest.approx(2.0)
    assert data["parts"][0]["params"]["bore_size"] == pytest.approx(2.0)
    assert "f.bolt_count" not in names  # counts never change
    assert "f.hub_diameter" not in names  # an absent option stays absent
    assert {"pins.position.x", "pins.position.z", "pins.pattern.radius", "tab.polygon.scale"} <= set(names)
    assert "f.position.x" not in names  # part 0 anchors the pose


def test_apply_values_writes_back_and_scales_outlines() -> None:
    data, params = spec_parameters(FLANGE)
    values = [p.value * 2 if p.kind != "offset" else p.value + 1 for p in params]
    out = apply_values(data, params, values)
    assert out["parts"][0]["params"]["diameter"] == 16
    assert out["parts"][1]["pattern"]["radius"] == 3
    assert out["parts"][1]["position"] == [1, 1, 2]
    assert out["parts"][2]["size"]["polygon"] == [[8, -2], [12, -2], [12, 2]]
    assert data["parts"][0]["params"]["diameter"] == 8  # the input is untouched


def test_known_dimension_names_units_and_errors() -> None:
    _, params = spec_parameters(FLANGE)
    param, value = parse_known_dimension("f.diameter=80mm", params, "cm")
    assert param.name == "f.diameter" and value == pytest.approx(8.0)
    assert parse_known_dimension("thickness = 1.25", params, "cm")[1] == 1.25
    with pytest.raises(ScaleError, match="ambiguous"):
        parse_known_dimension("diameter=8", params, "cm")  # f.diameter or pins.diameter
    with pytest.raises(ScaleError, match="not a length of this spec.*f.diameter"):
        parse_known_dimension("f.colour=3", params, "cm")
    with pytest.raises(ScaleError, match="PARAM=VALUE"):
        parse_known_dimension("80", params, "cm")
    with pytest.raises(ScaleError, match="> 0"):
        parse_known_dimension("f.diameter=-1", params, "cm")
