"""Model answers of any shape: completed, repaired or refused with a coded error — never a traceback."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from tests.recon3d.helpers import FLANGE, MIXED
from vlserve.errors import RequestError
from vlserve.recon3d.errors import SpecError
from vlserve.recon3d.repair import validate_with_repair
from vlserve.tasks.multiview_3d.answer import complete_json, read_answer

ODD_VALUES: list[Any] = [None, -1, 0, 1e300, -1e300, "", "x" * 300, [], {}, [1, 2], True, 3.5, "union", 10**20]


@pytest.mark.parametrize("document", [FLANGE, MIXED], ids=["flange", "mixed"])
def test_every_prefix_closes_to_valid_json_or_nothing(document: dict[str, Any]) -> None:
    for text in (json.dumps(document), json.dumps(document, indent=1, ensure_ascii=False)):
        closed_prefixes = 0
        for cut in range(len(text) + 1):
            closed = complete_json(text[:cut])
            if closed is None:
                continue
            closed_prefixes += 1
            data = json.loads(closed)
            assert isinstance(data, dict)
            # what survives is a prefix of the original: same keys in the same order
            assert list(data) == list(document)[: len(data)]
        assert closed_prefixes > len(text) * 0.8
    assert complete_json(json.dumps(FLANGE)) == json.dumps(FLANGE)
    cut = '{"name": "x", "parts": [{"id": "a", "size": {"x": 1'
    assert complete_json(cut) == '{"name": "x", "parts": [{"id": "a"}]}'
    assert complete_json('{"name": "a \\" b') is None  # an escaped quote does not end the string


def test_read_answer_takes_the_object_out_of_chatter_and_refuses_the_rest() -> None:
    text = "Here is the spec:\n```json\n" + json.dumps(FLANGE) + "\n```\nHope it helps."
    read = read_answer(text)
    assert read.document == FLANGE and not read.completed
    assert read_answer(json.dumps(FLANGE)[:-40]).completed
    for bad in ("", "no json here", "[1, 2, 3]", '{"spec_versi'):
        with pytest.raises(RequestError) as caught:
            read_answer(bad)
        assert caught.value.code == 4000


def _mutate(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        # walk to a random dict or list inside the document and break one entry
        node: Any = doc
        for _depth in range(rng.randint(0, 5)):
            children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
            children = [c for c in children if isinstance(c, dict | list) and c]
            if not children:
                break
            node = rng.choice(children)
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if rng.random() < 0.3:
                del node[key]
            else:
                node[key] = rng.choice(ODD_VALUES)
        elif isinstance(node, list) and node:
            index = rng.randrange(len(node))
            node[index] = rng.choice(ODD_VALUES)
    return doc


def test_broken_specs_are_repaired_or_refused_with_4000() -> None:
    rng = random.Random(14)
    repaired = refused = 0
    for _ in range(400):
        doc = _mutate(rng, rng.choice([FLANGE, MIXED]))
        try:
            spec, warnings = validate_with_repair(doc)
        except SpecError as err:  # a refusal with a message naming the field
            assert err.code == 4000 and err.message
            refused += 1
            continue
        assert spec.parts and isinstance(warnings, list)
        repaired += 1
    assert repaired > 100 and refused > 10
