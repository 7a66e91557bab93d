"""Loading specs and turning every validation failure into a :class:`SpecError` naming part and field.

Pydantic reports locations like ``("parts", 2, "cylinder", "size", "diameter")`` (the tag of the
discriminated union sits in the path); we print ``parts[2] (id="bolt_holes").size.diameter: must
be > 0`` instead, with the part's id looked up in the raw input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from vlserve.recon3d.errors import SpecError, part_path
from vlserve.recon3d.spec import PRIMITIVE_SHAPES, TEMPLATE_NAMES, ObjectSpec

MAX_REPORTED = 3


def load_spec(source: ObjectSpec | dict[str, Any] | str | bytes | Path) -> ObjectSpec:
    """Validate a spec given as a model, a dict, JSON text or a path to a JSON file.

    Raises :class:`SpecError` (message names the first offending part and field; ``details``
    holds all of them as ``errors``) for anything that is not a valid, consistent spec.
    """
    if isinstance(source, ObjectSpec):
        check_spec(source)
        return source
    data: Any = source
    if isinstance(source, Path):
        try:
            data = source.read_text(encoding="utf-8")
        except OSError as err:
            raise SpecError(f"cannot read spec file {source}: {err.strerror}") from err
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as err:
            raise SpecError(
                f"spec is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
            ) from err
    if not isinstance(data, dict):
        raise SpecError("spec must be a JSON object")
    try:
        spec = ObjectSpec.model_validate(data)
    except ValidationError as err:
        raise spec_error_from_validation(err, data) from err
    check_spec(spec)
    return spec


def check_spec(spec: ObjectSpec) -> None:
    """Consistency rules a schema cannot express: unique ids, the first part must be a union."""
    seen: dict[str, int] = {}
    for i, part in enumerate(spec.parts):
        if part.id in seen:
            raise SpecError.at(
                f"{part_path(i, part.id)}.id", f"duplicate id (already used by parts[{seen[part.id]}])"
            )
        seen[part.id] = i
    first = spec.parts[0]
    if first.op != "union":
        raise SpecError.at(
            f"{part_path(0, first.id)}.op",
            f'the first part must be a "union" (nothing to {first.op} from yet)',
        )


def spec_error_from_validation(err: ValidationError, data: Any) -> SpecError:
    """Translate a pydantic error into one SpecError listing up to three problems."""
    problems = [(_path(e, data), _reason(e)) for e in err.errors(include_url=False)]
    problems = _drop_union_noise(problems)
    first_path, first_reason = problems[0]
    message = "; ".join(f"{p}: {r}" if p else r for p, r in problems[:MAX_REPORTED])
    if len(problems) > MAX_REPORTED:
        message += f" (and {len(problems) - MAX_REPORTED} more)"
    return SpecError(
        message,
        path=first_path,
        reason=first_reason,
        errors=[{"path": p, "reason": r} for p, r in problems],
    )


def _path(e: ErrorDetails, data: Any) -> str:
    out = ""
    items = list(e["loc"])
    i = 0
    while i < len(items):
        key = items[i]
        if key == "parts" and i + 1 < len(items) and isinstance(items[i + 1], int):
            index = int(items[i + 1])
            raw = data.get("parts", []) if isinstance(data, dict) else []
            part = raw[index] if index < len(raw) and isinstance(raw[index], dict) else {}
            part_id = part.get("id") if isinstance(part.get("id"), str) else None
            out += part_path(index, part_id)
            i += 2
            # Skip the discriminator tags pydantic inserts: the shape, then the template name.
            if i < len(items) and items[i] in (*PRIMITIVE_SHAPES, "template"):
                i += 1
                if i < len(items) and items[i] in TEMPLATE_NAMES:
                    i += 1
            continue
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
        i += 1
        if key == "pattern" and i < len(items) and items[i] in ("circular", "linear"):
            i += 1  # the pattern's discriminator tag
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        out += "." + str((e.get("ctx") or {}).get("discriminator", "")).strip("'")
    return out


def _reason(e: ErrorDetails) -> str:
    ctx = {k: _num(v) for k, v in (e.get("ctx") or {}).items()}
    kind = e["type"]
    simple = {
        "greater_than": lambda: f"must be > {ctx.get('gt')}",
        "greater_than_equal": lambda: f"must be >= {ctx.get('ge')}",
        "less_than": lambda: f"must be < {ctx.get('lt')}",
        "less_than_equal": lambda: f"must be <= {ctx.get('le')}",
        "missing": lambda: "is required",
        "extra_forbidden": lambda: "unknown field",
        "too_short": lambda: f"needs at least {ctx.get('min_length')} item(s)",
        "too_long": lambda: f"allows at most {ctx.get('max_length')} item(s)",
        "string_too_short": lambda: "must not be empty",
        "string_too_long": lambda: f"must be at most {ctx.get('max_length')} characters",
        "literal_error": lambda: f"must be one of {ctx.get('expected')}",
        "finite_number": lambda: "must be a finite number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "int_parsing": lambda: "must be an integer",
        "int_type": lambda: "must be an integer",
        "int_from_float": lambda: "must be an integer",
        "union_tag_invalid": lambda: (
            f"unknown value {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
        ),
        "union_tag_not_found": lambda: "is required",
        "value_error": lambda: str(ctx.get("error", e["msg"])),
    }
    make = simple.get(kind)
    return make() if make else e["msg"]


def _num(value: Any) -> Any:
    # "must be > 0" reads better than "must be > 0.0"
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _drop_union_noise(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Keep order, drop exact duplicates (pydantic can report one problem per union branch).
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
