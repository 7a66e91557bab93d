"""Colours and materials: names or ``#hex`` → RGBA, material names → PBR presets.

Lookups are lenient on purpose: a model that writes ``"dark grey"`` or ``"brushed steel"`` still
gets a sensible colour (the closest known name, or the material's colour), because a spec that
validates must compile. Unknown names fall back to the part's default and leave a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

RGBA = tuple[float, float, float, float]
"""Linear-ish sRGB components in 0..1 (as glTF's ``baseColorFactor``)."""

NAMED: dict[str, str] = {
    "black": "#1a1a1a",
    "white": "#f2f2f2",
    "gray": "#8c8c8c",
    "grey": "#8c8c8c",
    "silver": "#c0c0c0",
    "red": "#c62828",
    "dark red": "#7f1d1d",
    "orange": "#ef6c00",
    "yellow": "#f9c80e",
    "gold": "#d4af37",
    "green": "#2e7d32",
    "dark green": "#1b5e20",
    "lime": "#7cb342",
    "olive": "#6b8e23",
    "teal": "#00897b",
    "cyan": "#00acc1",
    "blue": "#1e5bb8",
    "light blue": "#64b5f6",
    "dark blue": "#0d2c6b",
    "navy": "#1a237e",
    "purple": "#6a1b9a",
    "violet": "#8e24aa",
    "magenta": "#c2185b",
    "pink": "#ec8fb0",
    "brown": "#6d4c41",
    "tan": "#c8a27a",
    "beige": "#e3d5b8",
    "ivory": "#fffff0",
    "cream": "#f3e5c0",
    "dark gray": "#4d4d4d",
    "dark grey": "#4d4d4d",
    "light gray": "#cfcfcf",
    "light grey": "#cfcfcf",
    "copper": "#b87333",
    "bronze": "#a97142",
    "brass": "#b5a642",
    "natural": "#c8a27a",
}


@dataclass(frozen=True)
class Material:
    """A PBR preset: base colour plus glTF metallic/roughness factors."""

    name: str
    color: RGBA
    metallic: float
    roughness: float


def _hex(value: str) -> RGBA:
    v = value.lstrip("#")
    if len(v) == 3:
        v = "".join(c * 2 for c in v)
    return (int(v[0:2], 16) / 255, int(v[2:4], 16) / 255, int(v[4:6], 16) / 255, 1.0)


_MATERIALS: list[tuple[tuple[str, ...], Material]] = [
    (("stainless",), Material("stainless_steel", _hex("#b4b8bc"), 1.0, 0.3)),
    (("steel", "metal", "钢"), Material("steel", _hex("#8f969c"), 1.0, 0.4)),
    (("cast iron", "iron", "铁"), Material("cast_iron", _hex("#55595c"), 1.0, 0.7)),
    (("alumin", "铝"), Material("aluminium", _hex("#c9ccd1"), 1.0, 0.35)),
    (("titanium",), Material("titanium", _hex("#878681"), 1.0, 0.4)),
    (("brass", "黄铜"), Material("brass", _hex("#b5a642"), 1.0, 0.3)),
    (("bronze", "青铜"), Material("bronze", _hex("#a97142"), 1.0, 0.35)),
    (("copper", "铜"), Material("copper", _hex("#b87333"), 1.0, 0.3)),
    (("gold",), Material("gold", _hex("#d4af37"), 1.0, 0.25)),
    (("rubber", "橡胶"), Material("rubber", _hex("#222222"), 0.0, 0.9)),
    (("walnut",), Material("walnut", _hex("#5d4037"), 0.0, 0.7)),
    (("oak", "pine", "wood", "plywood", "mdf", "timber", "木"), Material("wood", _hex("#b08355"), 0.0, 0.75)),
    (("glass", "玻璃"), Material("glass", (0.8, 0.9, 0.95, 0.4), 0.0, 0.05)),
    (("ceramic", "porcelain", "陶"), Material("ceramic", _hex("#ece9e2"), 0.0, 0.3)),
    (("concrete", "stone", "cement", "石"), Material("concrete", _hex("#9e9e9e"), 0.0, 0.9)),
    (("fabric", "cloth", "leather", "布"), Material("fabric", _hex("#7a6a58"), 0.0, 0.95)),
    (("carbon",), Material("carbon_fiber", _hex("#2b2b2b"), 0.2, 0.4)),
    (
        ("nylon", "abs", "pla", "petg", "pvc", "plastic", "polymer", "resin", "塑料"),
        Material("plastic", _hex("#d9d9d9"), 0.0, 0.55),
    ),
]
DEFAULT_MATERIAL = Material("default", _hex("#b0b4ba"), 0.1, 0.6)

#: colours given to union parts that set neither colour nor material, in part order
PALETTE: tuple[RGBA, ...] = tuple(
    _hex(h) for h in ("#8fa8c8", "#e0a458", "#83b68f", "#c97b84", "#a390c4", "#d6c36a", "#6fb7b7", "#b0a089")
)


def material_preset(name: str | None) -> Material | None:
    """The preset for a material name (lenient: ``"Brushed Steel"`` → steel), or None."""
    if not name:
        return None
    key = name.lower().replace("_", " ").replace("-", " ")
    for needles, mat in _MATERIALS:
        if any(n in key for n in needles):
            return mat
    return None


def parse_color(value: str | None) -> RGBA | None:
    """``#rgb``/``#rrggbb``/``#rrggbbaa`` or a known name (``"dark grey"``) → RGBA, else None."""
    if not value:
        return None
    v = value.strip().lower()
    if v.startswith("#"):
        digits = v[1:]
        if len(digits) in (3, 6, 8) and all(c in "0123456789abcdef" for c in digits):
            if len(digits) == 8:
                r, g, b, _ = _hex(digits[:6])
                return (r, g, b, int(digits[6:], 16) / 255)
            return _hex(digits)
        return None
    v = v.replace("_", " ").replace("-", " ")
    if v in NAMED:
        return _hex(NAMED[v])
    # "metallic dark blue" → longest known name it contains
    hits = [name for name in NAMED if name in v]
    return _hex(NAMED[max(hits, key=len)]) if hits else None


def to_hex(color: RGBA) -> str:
    """RGBA → ``#rrggbb`` (alpha dropped)."""
    return "#" + "".join(f"{round(c * 255):02x}" for c in color[:3])
