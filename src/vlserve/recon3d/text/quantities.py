"""Numbers, units and dimension groups in free text (English and Chinese).

``scan("一个直径80毫米、厚10毫米的法兰，六个8毫米螺栓孔")`` finds 一 (count, classifier 个),
80 mm, 10 mm, 六 (count), 8 mm, each with its character span, so the parser can relate it to the
keywords around it. Handles Arabic numerals, Chinese numerals (五, 十二, 两, 一百二十, 三点五),
English number words (five, twenty-four), fractions (1/2, 1 1/2), units (mm, cm, m, in/inch/", ft, 毫米, 厘米, 公分, 米,
英寸), "about / approx / ~ / 约 / 大约 / 左右" and ``A x B x C`` groups (x, ×, *, by, 乘).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

MM_PER: dict[str, float] = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4, "ft": 304.8}
ANGLE_UNITS = ("deg",)
"""units of angles: such a quantity is an angle (role ``angle``), never a length"""

UNIT_WORDS: dict[str, str] = {
    "millimeters": "mm",
    "millimetres": "mm",
    "millimeter": "mm",
    "millimetre": "mm",
    "mm": "mm",
    "centimeters": "cm",
    "centimetres": "cm",
    "centimeter": "cm",
    "centimetre": "cm",
    "cm": "cm",
    "meters": "m",
    "metres": "m",
    "meter": "m",
    "metre": "m",
    "m": "m",
    "inches": "in",
    "inch": "in",
    "in": "in",
    '"': "in",
    "''": "in",
    "feet": "ft",
    "foot": "ft",
    "ft": "ft",
    "毫米": "mm",
    "厘米": "cm",
    "公分": "cm",
    "英寸": "in",
    "米": "m",
    "°": "deg",
    "deg": "deg",
    "degree": "deg",
    "degrees": "deg",
    "度": "deg",
}
EN_NUMBERS: dict[str, int] = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "dozen": 12,
}
ZH_DIGITS: dict[str, int] = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
ZH_UNITS: dict[str, int] = {"十": 10, "百": 100, "千": 1000, "万": 10000}
#: measure words after a Chinese count ("六个", "五片", "四条")
CLASSIFIERS = "个片只颗根条块枚把张"
APPROX_BEFORE = re.compile(
    r"(about|approx\.?|approximately|around|roughly|circa|ca\.|nearly|~|≈|约|大约|大概|差不多)\s*$"
)
APPROX_AFTER = re.compile(r"^\s*(左右|上下|or so|-?ish)")
#: words that stand for shapes, replaced before scanning so that 六角 is not read as "six corners"
SHAPE_WORDS = (
    ("六角形", "hex "),
    ("六角", "hex "),
    ("六方", "hex "),
    ("六边形", "hex "),
    ("四方", "square "),
    ("正方形", "square "),
    ("方形", "square "),
    ("圆形", "round "),
)

_EN_WORD = "|".join(sorted(EN_NUMBERS, key=len, reverse=True))
_NUMBER = re.compile(
    r"(?P<frac>(?:(?P<whole>\d+)[ -])?(?P<top>\d+)/(?P<bottom>[1-9]\d*))(?![\d.])"
    r"|(?P<num>\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<zh>[零〇一二两三四五六七八九十百千万]+(?:点[零〇一二三四五六七八九]+)?)"
    rf"|(?<![a-z])(?P<en>(?:{_EN_WORD})(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?)(?![a-z])"
)
_UNIT = re.compile(
    r"\s*(?P<unit>millimet(?:er|re)s?|centimet(?:er|re)s?|met(?:er|re)s?|inch(?:es)?|feet|foot|degrees?|deg|°"
    r"|mm|cm|ft|in|m|\"|''|毫米|厘米|公分|英寸|米|度)(?![a-z0-9])"
)
_TIMES = re.compile(r"\s*(?:x|×|\*|by|乘以?)\s*")
#: after "in" only these make it a unit, so "6 holes in a row" keeps "in" a preposition
_INCH_FOLLOWERS = re.compile(
    r"^\s*($|[,.;:)\]x×*]|(dia|diameter|thick|wide|long|high|tall|deep|by|bore|hole)\b)"
)


@dataclass
class Quantity:
    """A number (or an ``A x B x C`` group) found in the text."""

    values: list[float]
    units: list[str | None]
    start: int
    end: int
    approx: bool = False
    word: bool = False
    """written as a word (five, 五) rather than digits"""
    classifier: bool = False
    """followed by a Chinese measure word (个, 片, ...): certainly a count"""
    bolt_size: bool = False
    """written as a metric thread size (M8): a bolt diameter in mm"""
    notes: list[str] = field(default_factory=list)
    index: int = -1
    """position among the text's numbers (set by the reader)"""

    @property
    def is_group(self) -> bool:
        """True for ``A x B`` / ``A x B x C``."""
        return len(self.values) > 1

    @property
    def unitless(self) -> bool:
        """True when no value carries a unit."""
        return all(u is None for u in self.units)

    @property
    def is_integer(self) -> bool:
        """True for a single whole number."""
        return len(self.values) == 1 and float(self.values[0]).is_integer()


def normalize(text: str) -> str:
    """NFKC (full-width → ASCII), lower case, Chinese punctuation → ASCII, shape words spelled out."""
    out = unicodedata.normalize("NFKC", text).lower()
    for a, b in (
        ("，", ","),
        ("、", ","),
        ("；", ";"),
        ("。", "."),
        ("：", ":"),
        ("（", "("),
        ("）", ")"),
        ("″", '"'),
        ("“", '"'),
        ("”", '"'),
        ("’’", "''"),
        ("φ", "ø"),
    ):
        out = out.replace(a, b)
    for a, b in SHAPE_WORDS:
        out = out.replace(a, b)
    return out


def parse_zh_number(text: str) -> float | None:
    """五 → 5, 十二 → 12, 二十四 → 24, 一百二十 → 120, 两 → 2, 三点五 → 3.5, 一二〇 → 120."""
    whole, _, frac = text.partition("点")
    if not whole:
        return None
    if all(c in ZH_DIGITS for c in whole) and len(whole) > 1:
        value = float("".join(str(ZH_DIGITS[c]) for c in whole))  # digit by digit: 一二〇
    else:
        total, section, digit = 0, 0, None
        for c in whole:
            if c in ZH_DIGITS:
                digit = ZH_DIGITS[c]
            elif c == "万":
                total = (total + section + (digit or 0)) * 10000
                section, digit = 0, None
            else:
                section += (1 if digit is None else digit) * ZH_UNITS[c]
                digit = None
        value = float(total + section + (digit or 0))
    if frac:
        value += float("0." + "".join(str(ZH_DIGITS[c]) for c in frac))
    return value


def parse_en_number(text: str) -> float:
    """five → 5, twenty-four → 24, twenty four → 24."""
    return float(sum(EN_NUMBERS[w] for w in re.split(r"[- ]", text)))


def scan(text: str) -> list[Quantity]:
    """All quantities in normalised ``text``, dimension groups merged, in order."""
    singles: list[Quantity] = []
    for m in _NUMBER.finditer(text):
        if m.group("frac") is not None:  # 1/2, 1 1/2, 1-1/2 (inch sizes)
            value: float | None = int(m.group("whole") or 0) + int(m.group("top")) / int(m.group("bottom"))
            word = False
        elif m.group("num") is not None:
            value = float(m.group("num"))
            word = False
        elif m.group("zh") is not None:
            value, word = parse_zh_number(m.group("zh")), True
        else:
            value, word = parse_en_number(m.group("en")), True
        if value is None:
            continue
        q = Quantity([value], [None], m.start(), m.end(), word=word)
        unit = _UNIT.match(text, m.end())
        if unit and not (unit.group("unit") == "in" and not _INCH_FOLLOWERS.match(text[unit.end() :])):
            q.units = [UNIT_WORDS.get(unit.group("unit"), _unit_prefix(unit.group("unit")))]
            q.end = unit.end()
        if (
            q.units[0] is None
            and m.group("num")
            and m.start() > 0
            and text[m.start() - 1] == "m"
            and (m.start() < 2 or not ("a" <= text[m.start() - 2] <= "z"))
        ):
            q.bolt_size, q.units = True, ["mm"]  # M8 → an 8 mm bolt
        if q.end < len(text) and text[q.end] in CLASSIFIERS:
            q.classifier = True
        singles.append(q)
    return _mark_approx(text, _merge_groups(text, singles))


def _unit_prefix(word: str) -> str:
    for prefix, unit in (("millimet", "mm"), ("centimet", "cm"), ("met", "m"), ("inch", "in")):
        if word.startswith(prefix):
            return unit
    return word


def _merge_groups(text: str, singles: list[Quantity]) -> list[Quantity]:
    out: list[Quantity] = []
    for q in singles:
        prev = out[-1] if out else None
        if prev is not None and len(prev.values) < 3 and not q.word and not prev.word:
            between = text[prev.end : q.start]
            if _TIMES.fullmatch(between):
                prev.values.append(q.values[0])
                prev.units.append(q.units[0])
                prev.end = q.end
                continue
        out.append(q)
    for q in out:
        if q.is_group:
            known = [u for u in q.units if u]
            if known:  # "120 x 60 cm": the last unit applies to all
                q.units = [u or known[-1] for u in q.units]
    return out


def _mark_approx(text: str, quantities: list[Quantity]) -> list[Quantity]:
    for q in quantities:
        if APPROX_BEFORE.search(text[max(0, q.start - 16) : q.start]) or APPROX_AFTER.match(
            text[q.end : q.end + 8]
        ):
            q.approx = True
    return quantities
