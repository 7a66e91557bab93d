"""The JSON completer: shortest valid endings, checked against llguidance's own grammar."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runtime.schemas import ALL_SCHEMAS, TASK_SCHEMAS
from vlserve.runtime.completion import Completer, Unsupported
from vlserve.runtime.constrained import GrammarCompiler
from vlserve.runtime.local import LocalEngine
from vlserve.tasks.chart_parse import CHART_SCHEMA
from vlserve.tasks.grounding import GROUNDING_SCHEMA

CHART_REST = b'"x_axis":{"label":"","unit":""},"y_axis":{"label":"","unit":""},"series":[]}'


def complete(schema: dict[str, Any], prefix: bytes) -> bytes | None:
    completer = Completer(schema)
    return completer.completion(completer.feed(completer.start(), prefix))


@pytest.mark.parametrize(("schema", "prefix", "ending"), [
    (CHART_SCHEMA, b"", b'{"title":"","chart_type":"bar",' + CHART_REST),
    (CHART_SCHEMA, b'{"title":"ab', b'","chart_type":"bar",' + CHART_REST),
    (CHART_SCHEMA, b'{"ti', b'tle":"","chart_type":"bar",' + CHART_REST),  # a partial property name
    (CHART_SCHEMA, b'{"title":"","chart_type":"l', b'ine",' + CHART_REST),  # a partial enum value
    (CHART_SCHEMA, b'{"title":"","chart_type":"line","x_axis":{"label":"a\\', b'n","unit":""},'
     + CHART_REST[len(b'"x_axis":{"label":"","unit":""},'):]),  # an escape in progress
    (GROUNDING_SCHEMA, b'{"objects":[{"label":"x","bbox_2d":[1', b",0,0,0]}]}"),  # minItems
    (GROUNDING_SCHEMA, b'{"objects":[{"label":"x","bbox_2d":[1,', b"0,0,0]}]}"),
    (GROUNDING_SCHEMA, b'{"objects":[', b"]}"),
    (GROUNDING_SCHEMA, b'{"objects":[{', b'"label":"","bbox_2d":[0,0,0,0]}]}'),
    (GROUNDING_SCHEMA, b'{"objects":[]', b"}"),
    ({"type": "number"}, b"-", b"0"),
    ({"type": "number"}, b"1.", b"0"),
    ({"type": "number"}, b"1e+", b"0"),
    ({"type": "number", "minimum": -10, "maximum": 10}, b"-", b"1"),  # no negative zero in a range
    ({"type": "number", "exclusiveMinimum": 0, "maximum": 10}, b"", b"1"),
    ({"type": "number", "exclusiveMinimum": 0, "maximum": 10}, b"0", b".1"),
    ({"type": "integer", "minimum": 100000}, b"1", b"00000"),
    ({"type": "string", "minLength": 2}, b'"\\u00', b'00a"'),  # an escape counts as one character
    ({"type": "string"}, '"漢'.encode()[:3], b'\x80"'),  # half a UTF-8 character
    ({"enum": ["abc", "abd", 12]}, b'"ab', b'c"'),
    ({"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
     b'{"na', b'":0}'),  # an additional key "na" is shorter than finishing "name"
    ({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
      "additionalProperties": {"type": "integer"}}, b'{"na', b'me":""}'),  # but "name" is required
])
def test_shortest_endings(schema: dict[str, Any], prefix: bytes, ending: bytes) -> None:
    assert complete(schema, prefix) == ending
    if not ending.startswith(b"\x80"):
        jsonschema.validate(json.loads(prefix + ending), schema)


def test_text_no_reading_accepts_is_dead() -> None:
    completer = Completer(CHART_SCHEMA)
    assert completer.feed(completer.start(), b'{"nope"') == ()
    assert completer.completion(()) is None


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "^a+$"},
    {"type": "string", "format": "date-time"},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "minProperties": 1},
    {"type": "integer", "multipleOf": 3},
    {"$ref": "https://example.invalid/schema.json"},
    {"not": {"type": "string"}},
])
def test_unsupported_keywords_are_named(schema: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        Completer(schema)


def test_task_schemas_never_fall_back(engine: LocalEngine) -> None:
    """The tasks' schemas are fully understood: the guarantee holds for every structured task."""
    for name, schema in TASK_SCHEMAS.items():
        plan = engine.grammar.check(schema, 4096)
        assert plan.completer is not None and plan.warning is None, name


@pytest.fixture(scope="module")
def token_lengths(engine: LocalEngine) -> np.ndarray:
    lltok = engine.grammar.lltok
    return np.array([len(lltok.decode_bytes([i])) for i in range(engine.grammar.vocab_size)])


@pytest.mark.parametrize("name", sorted(ALL_SCHEMAS))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_every_prefix_the_grammar_allows_has_a_valid_ending(
    engine: LocalEngine, token_lengths: np.ndarray, name: str, data: st.DataObject
) -> None:
    """Walk the grammar with tokens drawn from its mask (any token, or one of the shortest, which
    builds numbers digit by digit and reaches the structure); at every step the completer's ending
    is accepted by llguidance as finishing the document, and the document validates."""
    import llguidance
    import llguidance.numpy

    schema = ALL_SCHEMAS[name]
    grammar: GrammarCompiler = engine.grammar
    plan = grammar.check(schema, 4096)
    assert plan.completer is not None
    completer = plan.completer
    matcher = llguidance.LLMatcher(grammar.lltok, plan.grammar, log_level=0)
    bitmask = np.zeros((1, (grammar.vocab_size + 31) // 32), dtype=np.int32)
    validator = jsonschema.Draft202012Validator(schema)  # jsonschema.validate re-checks the schema each call
    state, text = completer.start(), b""
    for _ in range(data.draw(st.integers(1, 60), label="steps")):
        ending = completer.completion(state)
        assert ending is not None, text
        assert grammar.ends_document(matcher, grammar.lltok.tokenize_bytes(ending)), (text, ending)
        validator.validate(json.loads(text + ending))
        llguidance.numpy.fill_next_token_bitmask(matcher, bitmask, 0)
        mask = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: grammar.vocab_size].astype(bool)
        mask[grammar.eos_token_ids] = False
        ids = np.flatnonzero(mask)
        if len(ids) == 0:
            break
        if data.draw(st.booleans(), label="shortest"):
            ids = ids[token_lengths[ids] == token_lengths[ids].min()]
        token = int(ids[data.draw(st.integers(0, len(ids) - 1), label="token")])
        piece = grammar.lltok.decode_bytes([token])
        state = completer.feed(state, piece)
        assert state, (text, piece)  # the completer follows every token the grammar allows
        matcher.consume_token(token)
        text += piece
