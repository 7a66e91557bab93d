"""The free-text parser, English and Chinese."""

from __future__ import annotations

from typing import Any

import pytest

from vlserve.recon3d import SpecError, compile_spec, parse_description
from vlserve.recon3d.text.quantities import normalize, parse_zh_number, scan


def _params(text: str) -> tuple[str, dict[str, Any], list[str]]:
    draft = parse_description(text)
    part = draft.spec.parts[0]
    params = (
        part.params.model_dump(exclude_defaults=True) if hasattr(part, "params") else part.size.model_dump()
    )
    return draft.template, params, draft.assumptions


@pytest.mark.parametrize(
    ("text", "template", "expected"),
    [
        (
            "five-blade impeller, diameter about 20 cm, hex bore",
            "impeller",
            {"diameter": 200, "blade_count": 5, "bore_shape": "hex"},
        ),
        (
            "一个直径80毫米、厚10毫米的法兰，六个8毫米螺栓孔",
            "flange",
            {"diameter": 80, "thickness": 10, "bolt_count": 6, "bolt_diameter": 8},
        ),
        ("table 120 x 60 cm, 75 cm high", "table", {"length": 1200, "width": 600, "height": 750}),
        (
            "an 80 mm flange, 10 mm thick, a 20 mm hex bore and six 8 mm bolt holes on a 60 mm circle",
            "flange",
            {
                "diameter": 80,
                "thickness": 10,
                "bore_shape": "hex",
                "bore_size": 20,
                "bolt_count": 6,
                "bolt_diameter": 8,
                "bolt_circle_diameter": 60,
            },
        ),
        (
            "spur gear with 24 teeth, module 2, 12 mm thick, 8 mm bore",
            "spur_gear",
            {"teeth": 24, "module": 2, "thickness": 12, "bore_size": 8},
        ),
        ("二十四齿齿轮，模数2，厚12毫米", "spur_gear", {"teeth": 24, "module": 2, "thickness": 12}),
        (
            "十二个叶片的叶轮，直径约30厘米，高6厘米，六角孔",
            "impeller",
            {"diameter": 300, "height": 60, "blade_count": 12, "bore_shape": "hex"},
        ),
        ("两个叶片的风扇 直径十二英寸", "impeller", {"diameter": 304.8, "blade_count": 2}),
        ("桌子 长120厘米 宽60厘米 高75厘米", "table", {"length": 1200, "width": 600, "height": 750}),
        (
            'a 4 ft by 2 ft desk, 30" high, round legs',
            "table",
            {"length": 1219.2, "width": 609.6, "height": 762, "leg_shape": "round"},
        ),
        (
            "bookshelf 80 x 30 x 180 cm with 6 shelves",
            "shelf",
            {"width": 800, "depth": 300, "height": 1800, "shelf_count": 6},
        ),
        ("五层书架，高1.8米，宽80厘米", "shelf", {"width": 800, "height": 1800, "shelf_count": 5}),
        ("椅子，座高45厘米，靠背高40厘米", "chair", {"seat_height": 450, "back_height": 400}),
        ("chair with seat 45 cm high, 90 cm tall", "chair", {"seat_height": 450, "back_height": 450}),
        (
            "L bracket 60 x 40 x 5 mm with 4 M6 holes",
            "bracket",
            {"length": 60, "width": 40, "thickness": 5, "hole_diameter": 6, "holes_per_leg": 2},
        ),
        (
            "project box 100x60x40 mm, 2 mm wall, closed",
            "enclosure_box",
            {"length": 100, "width": 60, "height": 40, "wall_thickness": 2, "open_top": False},
        ),
        ("六个M8螺栓的法兰，直径120毫米", "flange", {"diameter": 120, "bolt_count": 6, "bolt_diameter": 8}),
        ("ball about 40mm", "sphere", {"diameter": 40}),
    ],
)
def test_descriptions(text: str, template: str, expected: dict[str, Any]) -> None:
    name, params, _ = _params(text)
    assert name == template
    assert {k: params.get(k) for k in expected} == pytest.approx(expected)


def test_assumptions_list_defaults_and_guesses() -> None:
    draft = parse_description("five-blade impeller, diameter about 20 cm, hex bore")
    part = draft.spec.parts[0]
    assert part.confidence == {"diameter": 0.6, "blade_count": 0.9}
    assert any("hub_diameter = 50 (25 % of diameter)" in a for a in draft.assumptions)
    assert draft.spec.units == "mm" and draft.spec.category == "mechanical"
    _, params, assumptions = _params("flange diameter 80 and thickness 10")
    assert params["diameter"] == 80 and params["thickness"] == 10
    assert any("80 has no unit; assumed mm" in a for a in assumptions)
    _, params, assumptions = _params("table 120 x 60, 75 high")
    assert params["height"] == 750
    assert any("assumed cm" in a for a in assumptions)


def test_drafts_compile() -> None:
    pytest.importorskip("manifold3d", reason="needs the 'recon3d' extra")
    for text in (
        "一个直径80毫米、厚10毫米的法兰，六个8毫米螺栓孔",
        'steel pipe 2" outer diameter, 3 mm wall, 300 mm long',
    ):
        model = compile_spec(parse_description(text).spec)
        assert model.watertight and model.volume > 0
    pipe = parse_description('steel pipe 2" outer diameter, 3 mm wall, 300 mm long').spec
    assert pipe.parts[1].size.diameter == pytest.approx(50.8 - 6)  # type: ignore[union-attr]


def test_unknown_or_inconsistent_descriptions() -> None:
    with pytest.raises(SpecError, match="no known object"):
        parse_description("a thing about 30 mm")
    with pytest.raises(SpecError, match="is empty"):
        parse_description("  ")
    with pytest.raises(SpecError, match="bolt_circle_diameter"):
        parse_description("flange 50 mm, six 8 mm bolt holes on a 60 mm circle")


def test_numbers_and_units() -> None:
    assert [parse_zh_number(s) for s in ("五", "十二", "两", "二十四", "一百二十", "三点五", "一二〇")] == [
        5,
        12,
        2,
        24,
        120,
        3.5,
        120,
    ]
    found = scan(normalize('約20厘米左右，3.5"，six m8，120×60×75 mm，６個'))
    assert [(q.values, q.units, q.approx) for q in found] == [
        ([20.0], ["cm"], True),
        ([3.5], ["in"], False),
        ([6.0], [None], False),
        ([8.0], ["mm"], False),
        ([120.0, 60.0, 75.0], ["mm"] * 3, False),
        ([6.0], [None], False),
    ]
    assert found[3].bolt_size and found[2].word
    assert scan(normalize("6 holes in a row"))[0].units == [None]
