"""The spec models, their validation messages and the JSON Schema given to decoders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.recon3d.helpers import FLANGE, MIXED, part, spec, template
from vlserve.recon3d import ObjectSpec, SpecError, load_spec, spec_json_schema
from vlserve.recon3d.schema import spec_document
from vlserve.recon3d.spec import PRIMITIVE_SHAPES, TEMPLATE_NAMES


def _error(data: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(data)
    return info.value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            spec(part("bolt_holes", "cylinder", size={"diameter": 0, "height": 10})),
            'parts[0] (id="bolt_holes").size.diameter: must be > 0',
        ),
        (
            spec(
                part("a", "box", size={"x": 1, "y": 1, "z": 1}),
                part("b", "box", size={"x": 1, "y": -2, "z": 1}),
            ),
            'parts[1] (id="b").size.y: must be > 0',
        ),
        (spec(part("a", "box", size={"x": 1, "y": 1})), 'parts[0] (id="a").size.z: is required'),
        (spec(part("a", "blob", size={})), "parts[0] (id=\"a\").shape: unknown value 'blob'"),
        (spec(template("f", "flangee")), "parts[0] (id=\"f\").template: unknown value 'flangee'"),
        (spec(template("f", "flange", bolt_count=-1)), 'parts[0] (id="f").params.bolt_count: must be >= 0'),
        (spec(template("f", "flange", colour="red")), 'parts[0] (id="f").params.colour: unknown field'),
        (
            spec(part("t", "torus", size={"major_diameter": 10, "minor_diameter": 12})),
            'parts[0] (id="t").size.minor_diameter: must be < major_diameter',
        ),
        (
            spec(part("c", "cone", size={"bottom_diameter": 0, "top_diameter": 0, "height": 1})),
            'parts[0] (id="c").size.top_diameter: bottom_diameter and top_diameter cannot both be 0',
        ),
        (
            spec(part("r", "revolve", size={"profile": [[0, 0], [-1, 0], [1, 1]]})),
            'parts[0] (id="r").size.profile[1][0]: must be >= 0',
        ),
        (
            spec(part("p", "prism", size={"sides": 2, "across_flats": 1, "height": 1})),
            'parts[0] (id="p").size.sides: must be >= 3',
        ),
        (
            spec(part("a", "box", size={"x": 1, "y": 1, "z": 1}, pattern={"kind": "circular", "count": 0})),
            'parts[0] (id="a").pattern.count: must be >= 1',
        ),
        (
            spec(part("a", "box", size={"x": 1, "y": 1, "z": 1}, op="subtract")),
            'parts[0] (id="a").op: the first part must be a "union"',
        ),
        (
            spec(part("a", "box", size={"x": 1, "y": 1, "z": 1}), part("a", "sphere", size={"diameter": 1})),
            'parts[1] (id="a").id: duplicate id',
        ),
        (
            spec(part("a", "box", size={"x": 1, "y": 1, "z": 1}, position=[0, 0])),
            'parts[0] (id="a").position: needs at least 3 item(s)',
        ),
        ({"name": "x", "parts": []}, "parts: needs at least 1 item(s)"),
        (
            {**spec(part("a", "sphere", size={"diameter": 1})), "spec_version": "2.0"},
            "spec_version: must be one of '1.0'",
        ),
        ({**spec(part("a", "sphere", size={"diameter": 1})), "units": "furlong"}, "units: must be one of"),
    ],
)
def test_validation_errors_name_part_and_field(data: dict[str, Any], message: str) -> None:
    assert message in _error(data).message


def test_error_details_list_every_problem() -> None:
    err = _error(spec(part("a", "box", size={"x": 0, "y": 0, "z": 0})))
    assert err.code == 4000
    assert err.path == 'parts[0] (id="a").size.x'
    assert [e["path"] for e in err.details["errors"]] == [f'parts[0] (id="a").size.{k}' for k in "xyz"]


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    assert "not valid JSON" in _error('{"name": ').message
    assert "cannot read spec file" in _error(tmp_path / "missing.json").message
    assert "must be a JSON object" in _error("[1, 2]").message


def test_load_from_file_and_template_shape_is_optional(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec({"id": "f", "template": "flange", "params": {"diameter": 100}})))
    loaded = load_spec(path)
    assert loaded.parts[0].shape == "template"
    assert loaded.parts[0].params.diameter == 100  # type: ignore[union-attr]


def test_mirror_accepts_one_plane_and_round_trips() -> None:
    loaded = load_spec(spec(part("a", "box", size={"x": 1, "y": 1, "z": 1}, mirror="yz")))
    assert loaded.parts[0].mirror == ["yz"]
    again = load_spec(loaded.model_dump(mode="json"))
    assert again == loaded
    assert load_spec(FLANGE).model_dump(mode="json")["spec_version"] == "1.0"


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


@pytest.mark.parametrize("compact", [False, True])
def test_schema_is_plain_and_decoder_friendly(compact: bool) -> None:
    schema = spec_json_schema(compact=compact)
    nodes = list(_walk(schema))
    assert not any("oneOf" in n for n in nodes), "unions are anyOf"
    assert not any("pattern" in n and isinstance(n.get("pattern"), str) for n in nodes), "no regex"
    for n in nodes:
        if n.get("type") == "array" and "prefixItems" not in n:
            assert "maxItems" in n, f"unbounded array {n}"
        if n.get("type") == "object" and "properties" in n:
            assert n.get("additionalProperties") is False
    # $defs only reference leaves: no cycles
    defs = schema["$defs"]
    for name, body in defs.items():
        refs = {n["$ref"].split("/")[-1] for n in _walk(body) if "$ref" in n}
        for ref in refs:
            assert not any("$ref" in n for n in _walk(defs[ref])) or ref != name
    props = schema["$defs"]["CylinderPart"]["properties"]
    assert list(props)[:3] == ["id", "shape", "size"]
    shapes = {
        b["properties"]["shape"].get("const") for b in defs.values() if "shape" in b.get("properties", {})
    }
    assert shapes == {*PRIMITIVE_SHAPES, "template"}
    templates = {
        b["properties"]["template"]["const"] for b in defs.values() if "template" in b.get("properties", {})
    }
    assert templates == set(TEMPLATE_NAMES)


def test_compact_schema_is_smaller_and_without_annotations() -> None:
    full, compact = spec_json_schema(), spec_json_schema(compact=True)
    assert len(json.dumps(compact)) < 0.7 * len(json.dumps(full))
    assert not any("description" in n and isinstance(n["description"], str) for n in _walk(compact))
    assert full["$defs"]["FlangeParams"]["properties"]["diameter"]["description"].startswith("outer diameter")


class _ByteTokenizer:
    """One token per byte plus EOS: lets llguidance check whole documents against the grammar."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
    special_token_ids = [256]

    def __call__(self, text: bytes | str) -> list[int]:
        return list(text if isinstance(text, bytes) else text.encode())


@pytest.mark.parametrize("compact", [False, True])
def test_llguidance_compiles_the_schema_and_accepts_specs(compact: bool) -> None:
    llg = pytest.importorskip("llguidance")
    tok = llg.LLTokenizer(llg.TokenizerWrapper(_ByteTokenizer()))
    grammar = llg.LLMatcher.grammar_from_json_schema(
        json.dumps(spec_json_schema(compact=compact)), defaults={"whitespace_flexible": False}
    )
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, tok)
    assert not is_error, messages
    good = [FLANGE, MIXED, spec(template("t", "table", length=1200, leg_shape="round"), units="mm")]
    for doc in good:
        canonical = spec_document(ObjectSpec.model_validate(doc))
        matcher = llg.LLMatcher(tok, grammar, log_level=0)
        assert matcher.consume_tokens(list(json.dumps(canonical, separators=(",", ":")).encode()))
        assert matcher.is_accepting()
    bad = json.dumps(
        {"name": "x", "parts": [{"id": "a", "shape": "cylinder", "size": {"diameter": -1}}]},
        separators=(",", ":"),
    )
    matcher = llg.LLMatcher(tok, grammar, log_level=0)
    assert not (matcher.consume_tokens(list(bad.encode())) and matcher.is_accepting())


def test_docs_cover_every_shape_template_parameter_and_format() -> None:
    from vlserve.recon3d.exporters import FORMATS
    from vlserve.recon3d.spec import TemplateBase

    docs = (Path(__file__).resolve().parents[2] / "docs" / "recon3d.md").read_text(encoding="utf-8")
    for shape in PRIMITIVE_SHAPES:
        assert f"| `{shape}` |" in docs, shape
    for fmt in FORMATS:
        assert f"| `{fmt}` |" in docs, fmt
    for cls in TemplateBase.__subclasses__():
        name = cls.model_fields["template"].annotation.__args__[0]  # type: ignore[union-attr]
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{name}` |"))
        for param in cls.model_fields["params"].annotation.model_fields:  # type: ignore[union-attr]
            assert f"`{param}`" in row, (name, param)
