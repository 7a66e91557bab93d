"""Free text → spec draft: ``parse_description("five-blade impeller, diameter about 20 cm, hex bore")``.

Three steps, one module each: :mod:`.quantities` finds the numbers and units, :mod:`.reading`
pairs them with keywords into a :class:`~.reading.Reading`, :mod:`.mapping` maps the reading
onto a template's parameters and validates the draft. No model is involved: this is the fallback
when none is loaded, and it says what it assumed.
"""

from __future__ import annotations

from vlserve.recon3d.errors import SpecError
from vlserve.recon3d.text.mapping import TextDraft, build_draft
from vlserve.recon3d.text.reading import Reading, read

KNOWN_OBJECTS = (
    "flange, impeller, gear, bracket, box/enclosure, table, chair, shelf, cylinder, tube, sphere, cube, "
    "cone (or 法兰, 叶轮, 齿轮, 支架, 外壳, 桌子, 椅子, 书架)"
)


def parse_description(text: str) -> TextDraft:
    """Turn a plain description (English or Chinese) into a spec draft plus the assumptions made.

    Raises :class:`SpecError` when no known object is named.
    """
    if not text.strip():
        raise SpecError.at("description", "is empty")
    reading = read(text)
    if reading.template is None:
        raise SpecError.at("description", f"no known object named; mention one of: {KNOWN_OBJECTS}")
    return build_draft(reading)


__all__ = ["Reading", "TextDraft", "parse_description", "read"]
