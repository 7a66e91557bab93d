"""Free text → a :class:`Reading`: the quantities, roles, counts and flags a description states.

A deterministic keyword parser, not a model: it finds quantities (:mod:`.quantities`), finds
keywords (roles such as *diameter* / 直径, count nouns such as *blades* / 叶片, object names such
as *flange* / 法兰, flags such as *hex* / 六角), pairs each quantity with its nearest keyword in
the same clause (closest first, a keyword before the number winning ties), then maps the roles
onto the parameters of a template. Everything it did not read from the text is listed in
``assumptions`` — the template's defaults included — and every value it read gets a confidence
(0.9 stated, 0.6 approximate) in the part's ``confidence`` map.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from vlserve.recon3d.text.quantities import ANGLE_UNITS, MM_PER, Quantity, normalize, scan

CONFIDENT, APPROXIMATE = 0.9, 0.6
MAX_GAP = 10
"""characters of non-filler text allowed between a number and its keyword"""
BOUNDARY = re.compile(r"[,;.!?\n]")
FILLERS = re.compile(
    r"(?<![a-z])(a|an|the|of|with|is|are|at|on|in|about|approx|approximately|around|roughly|total|overall|its|has"
    r"|having|each|per|for)(?![a-z])|[\s\-:=()~≈]|的|个|片|只|颗|根|条|块|枚|为|是|约|大约|大概|左右|有|带|共|各|每|总"
)

#: (kind, name, keywords). English keywords match whole words (plural "s" allowed).
KEYWORDS: list[tuple[str, str, tuple[str, ...]]] = [
    ("template", "flange", ("flange", "法兰", "法兰盘")),
    ("template", "impeller", ("impeller", "fan wheel", "fan", "rotor", "叶轮", "风扇", "风轮")),
    ("template", "spur_gear", ("spur gear", "gear", "cog", "cogwheel", "齿轮")),
    ("template", "bracket", ("l-bracket", "angle bracket", "bracket", "支架", "角码", "角铁")),
    (
        "template",
        "enclosure_box",
        ("enclosure", "project box", "housing", "case", "box", "外壳", "盒子", "盒", "箱子", "箱"),
    ),
    ("template", "table", ("table", "desk", "桌子", "桌", "餐桌", "书桌")),
    ("template", "chair", ("chair", "stool", "椅子", "椅", "凳子")),
    (
        "template",
        "shelf",
        ("bookshelf", "bookcase", "shelving unit", "shelf unit", "shelf", "书架", "架子", "置物架", "货架"),
    ),
    ("template", "cylinder", ("cylinder", "rod", "disc", "disk", "圆柱", "圆盘", "棒")),
    ("template", "tube", ("tube", "pipe", "sleeve", "bushing", "管", "套筒", "轴套")),
    ("template", "sphere", ("sphere", "ball", "球")),
    ("template", "cube", ("cube", "cuboid", "block", "立方体", "长方体", "方块")),
    ("template", "cone", ("cone", "圆锥", "锥")),
    ("template", "hex_nut", ("hex nut", "hexagon nut", "nut", "hex 螺母", "螺母", "螺帽")),
    ("template", "hex_bolt", ("hex bolt", "hex head bolt", "hexagon bolt", "hex cap screw", "hex 螺栓")),
    ("template", "washer", ("flat washer", "plain washer", "washer", "垫圈", "平垫圈", "垫片")),
    ("template", "pipe_elbow", ("pipe elbow", "elbow", "弯头")),
    ("template", "pipe_tee", ("pipe tee", "tee piece", "t-piece", "tee", "三通")),
    ("template", "pulley", ("v-belt pulley", "belt pulley", "pulley", "sheave", "皮带轮", "带轮")),
    ("template", "keyed_shaft", ("shaft with a keyway", "shaft with keyway", "keyed shaft", "shaft", "带键槽的轴",
                                 "传动轴", "轴")),
    ("template", "bearing_housing", ("bearing housing", "pillow block", "plummer block", "轴承座")),
    ("role", "blade_thickness", ("blade thickness", "thick blades", "thick blade", "叶片厚度", "叶片厚")),
    ("role", "hub", ("hub diameter", "hub dia", "轮毂直径", "轮毂外径")),
    ("role", "bore", ("bore diameter", "bore dia", "inner diameter", "inside diameter", "i.d.", "id", "内径")),
    ("role", "bolt", ("bolt hole diameter", "bolt diameter", "螺栓孔直径", "螺栓孔径")),
    ("role", "leg", ("leg thickness", "leg size", "leg width", "腿粗", "腿宽")),
    ("role", "seat_thickness", ("seat thickness", "座面厚度", "座板厚")),
    ("role", "bend_radius", ("bend radius", "centerline radius", "centreline radius", "弯曲半径")),
    ("role", "key", ("keyway length", "key length", "keyway", "键槽长度", "键槽")),
    (
        "role",
        "outer_diameter",
        ("outer diameter", "outside diameter", "tip diameter", "o.d.", "od", "外径", "齿顶圆直径", "齿顶圆"),
    ),
    ("role", "pitch_diameter", ("pitch diameter", "pitch circle diameter", "分度圆直径", "分度圆")),
    (
        "role",
        "bcd",
        (
            "bolt circle diameter",
            "bolt circle",
            "pitch circle",
            "pcd",
            "circle",
            "分布圆直径",
            "分布圆",
            "孔距圆",
            "中心距",
        ),
    ),
    (
        "role",
        "bore",
        (
            "shaft hole",
            "center hole",
            "centre hole",
            "central hole",
            "bore",
            "内孔",
            "中心孔",
            "轴孔",
            "孔径",
        ),
    ),
    (
        "role",
        "bolt",
        (
            "bolt holes",
            "bolt hole",
            "screw holes",
            "screw hole",
            "bolts",
            "bolt",
            "螺栓孔",
            "螺栓",
            "螺孔",
            "螺丝孔",
        ),
    ),
    ("role", "hole", ("mounting holes", "mounting hole", "holes", "hole", "安装孔", "孔")),
    ("role", "diameter", ("diameter", "dia.", "dia", "ø", "⌀", "直径")),
    ("role", "radius", ("radius", "半径")),
    ("role", "wall", ("wall thickness", "walls", "wall", "壁厚", "壁")),
    ("role", "thickness", ("thickness", "thick", "厚度", "厚")),
    ("role", "seat", ("seat height", "seat", "座面高度", "座面高", "座高", "座面", "座")),
    ("role", "back", ("backrest height", "backrest", "back height", "靠背高度", "靠背高", "靠背")),
    ("role", "height", ("height", "high", "tall", "高度", "高")),
    ("role", "width", ("width", "wide", "宽度", "宽")),
    ("role", "length", ("length", "long", "长度", "长")),
    ("role", "depth", ("depth", "deep", "深度", "深")),
    ("role", "hub", ("hub", "轮毂", "毂")),
    ("role", "module", ("module", "模数")),
    ("role", "leg", ("legs", "leg", "桌腿", "椅腿", "腿")),
    ("count", "blade", ("blades", "blade", "vanes", "vane", "叶片", "叶")),
    ("count", "teeth", ("teeth", "tooth", "齿数", "齿")),
    ("count", "shelves", ("shelves", "tiers", "levels", "boards", "层", "隔板", "格")),
    ("count", "groove", ("grooves", "groove", "belts", "槽")),
    ("flag", "hex", ("hexagonal", "hexagon", "hex")),
    ("flag", "square", ("square",)),
    ("flag", "round_legs", ("round legs", "round leg", "圆腿")),
    ("flag", "no_bore", ("no bore", "solid", "无孔", "实心")),
    ("flag", "closed", ("closed", "with lid", "with a lid", "lid", "带盖", "封闭")),
    ("flag", "open", ("open top", "open-top", "open", "无盖", "开口")),
    ("flag", "no_back", ("no back", "without back", "open back", "无背板")),
    ("flag", "gusset", ("gusset", "rib", "加强筋")),
    ("flag", "backward", ("backward curved", "backward-curved", "backward", "后弯", "后向")),
    ("flag", "forward", ("forward curved", "forward-curved", "forward", "前弯", "前向")),
    ("flag", "straight", ("straight blades", "radial blades", "straight", "radial", "直叶片", "径向")),
]
#: English adjectives follow their number ("75 cm high"): they never take the number after them
POSTFIX = {"high", "tall", "thick", "wide", "long", "deep"}
COUNT_ROLES = {
    "blade": "blade",
    "teeth": "teeth",
    "shelves": "shelves",
    "bolt": "bolt",
    "hole": "hole",
    "leg": "leg",
    "groove": "groove",
}
#: (noun before the number, role of the adjective after it) → the role meant: "legs 4 cm thick"
QUALIFIED: dict[tuple[str, str], str] = {
    ("seat", "height"): "seat",
    ("back", "height"): "back",
    ("seat", "thickness"): "seat_thickness",
    ("leg", "thickness"): "leg",
    ("leg", "width"): "leg",
    ("hub", "diameter"): "hub",
    ("blade", "thickness"): "blade_thickness",
    ("bore", "diameter"): "bore",
    ("hole", "diameter"): "hole",
    ("bolt", "diameter"): "bolt",
    ("wall", "thickness"): "wall",
}


@dataclass
class Mention:
    """A keyword found in the text."""

    kind: str
    name: str
    start: int
    end: int


class Value(NamedTuple):
    """One value read from the text (mm for lengths) and where it came from."""

    value: float
    approx: bool
    source: int = -1
    """index into :attr:`Reading.numbers` (-1: derived, not written in the text)"""


class Group(NamedTuple):
    """An ``A x B x C`` group, in mm."""

    values: list[float]
    approx: bool
    source: int = -1


@dataclass
class Number:
    """A number as written in the text, and what became of it: used for a parameter, or ignored."""

    text: str
    kind: str
    """dimension, count or group"""
    role: str | None = None
    """the keyword it was paired with (None: none)"""
    uses: list[str] = field(default_factory=list)
    """the parameters it set, ``"diameter = 80"``"""
    ignored: str = ""
    """why it set nothing (filled in after mapping)"""


@dataclass
class Reading:
    """What the text says, before it is mapped onto a template."""

    text: str
    template: str | None
    dims: dict[str, list[Value]] = field(default_factory=dict)
    """role → values in mm, in text order"""
    groups: list[Group] = field(default_factory=list)
    """``A x B x C`` groups in mm"""
    counts: dict[str, int] = field(default_factory=dict)
    count_sources: dict[str, int] = field(default_factory=dict)
    """count role → index into :attr:`numbers`"""
    flags: set[str] = field(default_factory=set)
    unitless: list[float] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    numbers: list[Number] = field(default_factory=list)
    """every number in the text, in order"""

    def first(self, *roles: str) -> Value | None:
        """The first value found for any of ``roles`` (in the order given)."""
        for role in roles:
            if self.dims.get(role):
                return self.dims[role][0]
        return None

    def use(self, source: int, what: str) -> None:
        """Record that number ``source`` set ``what`` (``"diameter = 80"``)."""
        if 0 <= source < len(self.numbers) and what not in self.numbers[source].uses:
            self.numbers[source].uses.append(what)

    def count(self, role: str, what: str | None = None) -> int | None:
        """The count stated for ``role`` (marked as used for ``what`` when given)."""
        if role not in self.counts:
            return None
        if what:
            self.use(self.count_sources.get(role, -1), what)
        return self.counts[role]


def _keyword_regex() -> tuple[re.Pattern[str], list[tuple[str, str]]]:
    entries = sorted(
        ((w, kind, name) for kind, name, words in KEYWORDS for w in words), key=lambda e: -len(e[0])
    )
    parts = []
    for i, (word, _kind, _name) in enumerate(entries):
        pattern = re.escape(word)
        if word.isascii() and word[0].isalpha():
            plural = "s?" if word[-1].isalpha() else ""
            pattern = rf"(?<![a-z]){pattern}{plural}(?![a-z])"
        parts.append(f"(?P<k{i}>{pattern})")
    return re.compile("|".join(parts)), [(kind, name) for _w, kind, name in entries]


_KEYS, _KEY_INFO = _keyword_regex()


def find_mentions(text: str) -> list[Mention]:
    """Keywords in normalised ``text``, longest match first, non-overlapping, in order."""
    out = []
    for m in _KEYS.finditer(text):
        kind, name = _KEY_INFO[int(str(m.lastgroup)[1:])]
        out.append(Mention(kind, name, m.start(), m.end()))
    return out


def _gap(text: str) -> int | None:
    """Non-filler characters in ``text``, or None if a clause boundary separates the two ends."""
    if BOUNDARY.search(text):
        return None
    return len(FILLERS.sub("", text))


def read(text: str) -> Reading:
    """Quantities and keywords of ``text`` paired up into a :class:`Reading`."""
    norm = normalize(text)
    quantities = scan(norm)
    mentions = find_mentions(norm)
    # a number inside a keyword span is part of the word, not a quantity
    quantities = [q for q in quantities if not any(m.start <= q.start < m.end for m in mentions)]
    templates = [m for m in mentions if m.kind == "template"]
    reading = Reading(text=text, template=templates[0].name if templates else None)
    if len({m.name for m in templates}) > 1:
        others = sorted({m.name for m in templates} - {reading.template or ""})
        reading.assumptions.append(
            f"several objects named; built the first one ({reading.template}), ignored {', '.join(others)}"
        )
    reading.flags = {m.name for m in mentions if m.kind == "flag"}
    counts = [q for q in quantities if _is_count(norm, q, mentions, quantities)]
    dims = [q for q in quantities if q not in counts]
    for q in quantities:
        q.index = len(reading.numbers)
        kind = "count" if q in counts else "group" if q.is_group else "dimension"
        reading.numbers.append(Number(norm[q.start : q.end].strip(), kind))
    _pair_counts(norm, counts, dims, mentions, reading)
    _pair_dims(norm, dims, mentions, reading)
    return reading


def _is_count(text: str, q: Quantity, mentions: list[Mention], quantities: list[Quantity]) -> bool:
    if not (q.unitless and q.is_integer) or q.bolt_size:
        return False
    if q.classifier or (q.word and not text[q.end : q.end + 1].isdigit()):
        return True
    # a bare integer right next to a count noun: "20 teeth", "齿数20", "5-blade", "4 M6 holes"
    nouns = [m for m in mentions if m.kind == "count" or m.name in COUNT_ROLES]
    return _nearest(text, q, nouns, quantities, skip_dims=True) is not None


def _nearest(
    text: str, q: Quantity, mentions: list[Mention], quantities: list[Quantity], skip_dims: bool
) -> Mention | None:
    best: tuple[tuple[int, int, int], Mention] | None = None
    for m in mentions:
        between, lo, hi = (
            (text[m.end : q.start], m.end, q.start)
            if m.end <= q.start
            else (text[q.end : m.start], q.end, m.start)
        )
        if m.end > q.start and m.start < q.end:
            continue
        inside = [o for o in quantities if o is not q and lo <= o.start < hi]
        if inside:
            if not skip_dims or len(inside) > 1 or not (not inside[0].unitless or inside[0].bolt_size):
                continue
            between = text[lo : inside[0].start] + text[inside[0].end : hi]
        gap = _gap(between)
        if gap is None or gap > MAX_GAP:
            continue
        key = (gap, len(between.strip()), 0 if m.end <= q.start else 1)
        if best is None or key < best[0]:
            best = (key, m)
    return best[1] if best else None


def _preference(text: str, m: Mention, direction: int) -> int:
    if direction == 1 and text[m.start : m.end] in POSTFIX:
        return 0
    return 1 if direction == 0 else 2


def _pair_counts(
    text: str, counts: list[Quantity], dims: list[Quantity], mentions: list[Mention], r: Reading
) -> None:
    nouns = [m for m in mentions if m.kind == "count" or m.name in COUNT_ROLES]
    for q in counts:
        m = _nearest(text, q, nouns, counts + dims, skip_dims=True)
        if m is not None and m.name in COUNT_ROLES:
            role = COUNT_ROLES[m.name]
            r.numbers[q.index].role = role
            if role not in r.counts:
                r.counts[role], r.count_sources[role] = int(q.values[0]), q.index


def _pair_dims(text: str, dims: list[Quantity], mentions: list[Mention], r: Reading) -> None:
    for q in [q for q in dims if q.units[0] in ANGLE_UNITS]:  # "90°": an angle, whatever is near it
        r.numbers[q.index].role = "angle"
        r.dims.setdefault("angle", []).append(Value(q.values[0], q.approx, q.index))
    dims = [q for q in dims if q.units[0] not in ANGLE_UNITS]
    targets = [m for m in mentions if m.kind in ("role", "template", "count")]
    candidates = []
    for qi, q in enumerate(dims):
        for mi, m in enumerate(targets):
            if m.end <= q.start:
                between, direction = text[m.end : q.start], 0
                if text[m.start : m.end] in POSTFIX:
                    continue
            elif m.start >= q.end:
                between, direction = text[q.end : m.start], 1
            else:
                continue
            lo, hi = (m.end, q.start) if direction == 0 else (q.end, m.start)
            if any(lo <= o.start < hi for o in dims if o is not q):
                continue
            gap = _gap(between)
            if gap is not None and gap <= MAX_GAP:
                # fewest meaningful characters first, then the physically closer keyword, then
                # "75 cm high" over "diameter 75" over "90 cm diameter"
                candidates.append((gap, len(between.strip()), _preference(text, m, direction), qi, mi))
    used_q: set[int] = set()
    used_m: set[int] = set()
    roles: dict[int, str] = {}
    for *_rank, qi, mi in sorted(candidates):
        if qi in used_q or mi in used_m:
            continue
        used_q.add(qi)
        used_m.add(mi)
        m = targets[mi]
        roles[qi] = "main" if m.kind == "template" else ("blade_thickness" if m.name == "blade" else m.name)
    # "seat 45 cm high", "legs 4 cm thick": the noun before qualifies the adjective after
    for gap, _raw, _pref, qi, mi in candidates:
        m = targets[mi]
        meant = QUALIFIED.get((m.name, roles.get(qi, "")))
        if mi not in used_m and gap == 0 and meant and m.end <= dims[qi].start:
            roles[qi] = meant
            used_m.add(mi)
    explicit: list[str | None] = [u for q in dims for u in q.units if u]
    for qi, q in enumerate(dims):
        role = "bolt" if q.bolt_size else roles.get(qi, "unknown")
        values = [_to_mm(v, u, q, role, explicit, r) for v, u in zip(q.values, q.units, strict=True)]
        r.numbers[q.index].role = None if role == "unknown" else role
        if q.is_group:
            r.groups.append(Group(values, q.approx, q.index))
            if role not in ("main", "unknown", "bolt"):
                r.assumptions.append(
                    f"the group {q.values} was linked to {role!r}; used as overall dimensions"
                )
            continue
        if role == "unknown":
            continue  # reported with the other unused numbers once the draft is mapped
        if role == "radius":
            role, values = "diameter", [2 * values[0]]
        r.dims.setdefault(role, []).append(Value(values[0], q.approx, q.index))


def _to_mm(
    value: float, unit: str | None, q: Quantity, role: str, explicit: list[str | None], r: Reading
) -> float:
    if role == "module":
        return value  # a module is a length in mm by definition
    if unit is None:
        if explicit:
            unit = max(set(explicit), key=explicit.count)
            why = "the unit used elsewhere in the text"
        elif r.template in ("table", "chair", "shelf"):
            unit = "cm" if value < 400 else "mm"
            why = "furniture sizes are usually given in cm" if unit == "cm" else "large number"
        else:
            unit, why = "mm", "the default unit"
        r.assumptions.append(f"{value:g} has no unit; assumed {unit} ({why})")
    return value * MM_PER[str(unit)]
