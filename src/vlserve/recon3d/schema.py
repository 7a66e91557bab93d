"""The spec's JSON Schema, as handed to a constrained decoder (llguidance, xgrammar) or a prompt.

Two variants, both generated from :class:`~vlserve.recon3d.spec.ObjectSpec`:

* **full** — with titles, descriptions and defaults: for prompts, docs and humans.
* **compact** — only the validating keywords (``type``, ``properties``, ``required``, ``enum``,
  ``const``, ``minimum``/``maximum``, ``minItems``/``maxItems``, ``additionalProperties``,
  ``anyOf``, ``$defs``/``$ref``): about 40 % smaller, for decoders.

Both are plain JSON Schema: unions are ``anyOf`` (each branch has a distinct ``const`` tag, so it
equals ``oneOf``, which decoders support poorly), no ``$ref`` cycles (``$defs`` only hold leaf
objects), no regex patterns, every array bounded, ``additionalProperties: false`` on every
object, and properties listed in the order a model should write them (``id``, ``shape``,
``template``, ``size``/``params`` first, so it commits to the kind of part before its placement;
llguidance enforces that order, see :func:`spec_document`).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from vlserve.recon3d.spec import SPEC_VERSION, ObjectSpec

FIRST_KEYS = (
    "spec_version",
    "name",
    "category",
    "units",
    "description",
    "id",
    "shape",
    "template",
    "size",
    "params",
)
ANNOTATIONS = ("title", "description", "default", "examples", "discriminator")


def spec_json_schema(compact: bool = False) -> dict[str, Any]:
    """The JSON Schema of spec version ``1.0`` (a fresh copy the caller may modify).

    ``compact=True`` drops annotations (titles, descriptions, defaults, discriminator hints).
    """
    return copy.deepcopy(_compact() if compact else _full())


@lru_cache(maxsize=1)
def _full() -> dict[str, Any]:
    schema = ObjectSpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://vlserve.dev/schemas/object-spec/{SPEC_VERSION}"
    schema["title"] = "ObjectSpec"
    out: dict[str, Any] = _walk(schema, _order)
    return out


@lru_cache(maxsize=1)
def _compact() -> dict[str, Any]:
    schema = copy.deepcopy(_full())
    schema.pop("$id", None)
    out: dict[str, Any] = _walk(schema, _strip)
    return out


def _walk(node: Any, fix: Any) -> Any:
    if isinstance(node, dict):
        return fix({k: _walk(v, fix) if k != "properties" else _walk_props(v, fix) for k, v in node.items()})
    if isinstance(node, list):
        return [_walk(v, fix) for v in node]
    return node


def _walk_props(props: dict[str, Any], fix: Any) -> dict[str, Any]:
    # Property names are data here, not keywords: never strip a property called "description".
    return {name: _walk(sub, fix) for name, sub in props.items()}


def _order(node: dict[str, Any]) -> dict[str, Any]:
    # Every branch of our unions has a distinct const tag, so oneOf ≡ anyOf; decoders
    # (llguidance, xgrammar) implement anyOf exactly but oneOf only approximately or not at all.
    if "oneOf" in node:
        node["anyOf"] = node.pop("oneOf")
    props = node.get("properties")
    if isinstance(props, dict):
        first = [k for k in FIRST_KEYS if k in props]
        node["properties"] = {k: props[k] for k in [*first, *[k for k in props if k not in first]]}
    return node


def _strip(node: dict[str, Any]) -> dict[str, Any]:
    for key in ANNOTATIONS:
        node.pop(key, None)
    return node


def spec_document(spec: ObjectSpec, *, exclude_defaults: bool = False) -> dict[str, Any]:
    """``spec`` as a JSON-able dict with keys in schema order.

    Decoders such as llguidance emit (and accept) properties in the order the schema lists them,
    so few-shot examples in a prompt should use this order too; pydantic itself accepts any order.
    """
    data = spec.model_dump(mode="json", exclude_none=True, exclude_defaults=exclude_defaults)
    data.setdefault("spec_version", spec.spec_version)
    ordered: dict[str, Any] = _walk(data, _order_keys)
    return ordered


def _order_keys(node: dict[str, Any]) -> dict[str, Any]:
    first = [k for k in FIRST_KEYS if k in node]
    return {k: node[k] for k in [*first, *[k for k in node if k not in first]]}
