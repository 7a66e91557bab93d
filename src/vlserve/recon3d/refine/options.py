"""Refinement's options from the configuration and from what a caller typed, in one place.

The CLI (``vlserve recon3d refine``, ``from-images --refine-…``) and the service (the
``multiview_3d`` job option ``refine``) both use these, so the same bounds and the same spelling of
a known dimension hold everywhere (the configured limits become
:func:`~vlserve.recon3d.refine.pipeline.refine_options`):

* :func:`known_dimension_text`: ``("f.diameter", 80.0)`` → ``"f.diameter=80mm"``, the form
  :func:`~vlserve.recon3d.refine.pipeline.refine` reads;
* :class:`CharucoSpec` / :func:`parse_charuco`: a printed ChArUco board (``5x7:30:22:DICT_5X5_100``),
  its sizes bounded and checked against its dictionary;
* :func:`scale_source`: exactly one of a marker size, a ChArUco board and a known dimension, or a
  :class:`ScaleError` (4000) saying so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vlserve.recon3d.refine.errors import ScaleError

MAX_MARKER_MM = 2000.0
"""a printed marker larger than 2 m is a typo (cm for mm, say), not a marker"""
MAX_DIMENSION_MM = 1_000_000.0
"""1 km: the spec's own size limit is far below; anything beyond is a typo"""
MAX_PARAMETER_CHARS = 200
MIN_BOARD_SQUARES = 3
"""3×3 squares: 4 inner corners, the fewest that span the table's plane"""
MAX_BOARD_SQUARES = 30
"""squares along one side of a ChArUco board (30×30: 841 corners, 350 000 corner pairs)"""
MAX_BOARD_MM = MAX_MARKER_MM
"""a board whose long side is over 2 m is a typo, as for a marker"""
DEFAULT_CHARUCO_DICTIONARY = "DICT_5X5_100"
CHARUCO_DICTIONARIES: dict[str, int] = {
    **{f"DICT_{b}X{b}_{n}": n for b in (4, 5, 6, 7) for n in (50, 100, 250, 1000)},
    "DICT_ARUCO_ORIGINAL": 1024,
    "DICT_APRILTAG_16h5": 30,
    "DICT_APRILTAG_25h9": 35,
    "DICT_APRILTAG_36h10": 2320,
    "DICT_APRILTAG_36h11": 587,
}
"""OpenCV's predefined ArUco dictionaries a board may use, and how many markers each holds"""
CHARUCO_SYNTAX = "COLSxROWS:SQUARE_MM:MARKER_MM[:DICTIONARY], e.g. 5x7:30:22:DICT_5X5_100"


@dataclass(frozen=True)
class CharucoSpec:
    """A printed ChArUco board (OpenCV's ``CharucoBoard`` layout): ``squares_x`` × ``squares_y``
    chessboard squares of ``square_mm``, ArUco markers of ``marker_mm`` from ``dictionary`` in
    the white ones. Checked when made: :class:`ScaleError` (4000) for sizes out of bounds, a
    marker not smaller than its square, an unknown dictionary or one with too few markers."""

    squares_x: int
    squares_y: int
    square_mm: float
    marker_mm: float
    dictionary: str = DEFAULT_CHARUCO_DICTIONARY

    def __post_init__(self) -> None:
        for name, n in (("squares_x", self.squares_x), ("squares_y", self.squares_y)):
            if isinstance(n, bool) or not isinstance(n, int) or not MIN_BOARD_SQUARES <= n <= MAX_BOARD_SQUARES:
                raise ScaleError(f"ChArUco board: {name} must be a whole number of squares in "
                                 f"[{MIN_BOARD_SQUARES}, {MAX_BOARD_SQUARES}], got {n!r}", param=f"charuco.{name}")
        for name, mm in (("square_mm", self.square_mm), ("marker_mm", self.marker_mm)):
            if isinstance(mm, bool) or not isinstance(mm, int | float) or not (math.isfinite(mm) and mm > 0):
                raise ScaleError(f"ChArUco board: {name} must be a number of mm > 0, got {mm!r}",
                                 param=f"charuco.{name}")
        if not self.marker_mm < self.square_mm:
            raise ScaleError(f"ChArUco board: the marker ({self.marker_mm:g} mm) must be smaller than its square "
                             f"({self.square_mm:g} mm)", param="charuco.marker_mm")
        if max(self.squares_x, self.squares_y) * self.square_mm > MAX_BOARD_MM:
            raise ScaleError(f"ChArUco board: {self.squares_x}x{self.squares_y} squares of {self.square_mm:g} mm "
                             f"are over {MAX_BOARD_MM:g} mm long (cm for mm?)", param="charuco.square_mm")
        name = charuco_dictionary(self.dictionary)
        object.__setattr__(self, "dictionary", name)
        if self.markers > CHARUCO_DICTIONARIES[name]:
            raise ScaleError(f"ChArUco board: {self.squares_x}x{self.squares_y} squares hold {self.markers} markers, "
                             f"{name} has only {CHARUCO_DICTIONARIES[name]}", param="charuco.dictionary")

    @property
    def markers(self) -> int:
        """ArUco markers on the board (one in every white square)."""
        return self.squares_x * self.squares_y // 2

    @property
    def corners(self) -> int:
        """Inner chessboard corners (ChArUco corners), ids ``0 … corners − 1``."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    def text(self) -> str:
        """The CLI spelling, ``5x7:30:22:DICT_5X5_100``."""
        return f"{self.squares_x}x{self.squares_y}:{self.square_mm:g}:{self.marker_mm:g}:{self.dictionary}"


def charuco_dictionary(name: str) -> str:
    """The canonical name of a board's dictionary (``5x5_100`` → ``DICT_5X5_100``), or 4000."""
    key = str(name).strip().upper()
    key = key if key.startswith("DICT_") else f"DICT_{key}"
    for canonical in CHARUCO_DICTIONARIES:
        if canonical.upper() == key:
            return canonical
    raise ScaleError(f"ChArUco board: unknown dictionary {str(name)[:40]!r}; one of "
                     f"{', '.join(CHARUCO_DICTIONARIES)}", param="charuco.dictionary")


def parse_charuco(text: str) -> CharucoSpec:
    """``COLSxROWS:SQUARE_MM:MARKER_MM[:DICTIONARY]`` (``5x7:30:22:DICT_5X5_100``; the dictionary
    defaults to ``DICT_5X5_100``) → a checked :class:`CharucoSpec`, or :class:`ScaleError` (4000)."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*[xX×]\s*(\d{1,3})\s*:([^:]{1,20}):([^:]{1,20})(?::([^:]{1,40}))?\s*",
                         text[:120])
    if match is None:
        raise ScaleError(f"ChArUco board {text[:60]!r}: write {CHARUCO_SYNTAX}", param="charuco")
    cols, rows, square, marker, dictionary = match.groups()
    try:
        square_mm, marker_mm = float(square), float(marker)
    except ValueError:
        raise ScaleError(f"ChArUco board {text[:60]!r}: the square and marker sizes are numbers of mm; write "
                         f"{CHARUCO_SYNTAX}", param="charuco") from None
    return CharucoSpec(int(cols), int(rows), square_mm, marker_mm, dictionary or DEFAULT_CHARUCO_DICTIONARY)




def check_marker_mm(value: float) -> float:
    """A marker side in mm, or :class:`ScaleError` (4000) for zero, negative, NaN or absurd sizes."""
    if not (math.isfinite(value) and 0 < value <= MAX_MARKER_MM):
        raise ScaleError(f"the marker size must be a number of mm in (0, {MAX_MARKER_MM:g}], got {value!r}",
                         param="marker_size_mm")
    return float(value)


def known_dimension_text(parameter: str, mm: float) -> str:
    """``PARAM=VALUEmm`` for :func:`refine` from a parameter name and a length in mm (checked:
    4000 for an empty or over-long name, one holding ``=`` or control characters, or a length
    that is not in (0, 1 km])."""
    name = parameter.strip()
    if not name or len(name) > MAX_PARAMETER_CHARS or "=" in name or any(ord(c) < 32 for c in name):
        raise ScaleError(f"known dimension: the parameter must be a spec length's name such as 'f.diameter' "
                         f"or 'diameter' (1-{MAX_PARAMETER_CHARS} characters, no '='), got {parameter[:60]!r}",
                         param="known_dimension.parameter")
    if not (math.isfinite(mm) and 0 < mm <= MAX_DIMENSION_MM):
        raise ScaleError(f"known dimension: the length must be a number of mm in (0, {MAX_DIMENSION_MM:g}], "
                         f"got {mm!r}", param="known_dimension.mm")
    return f"{name}={mm:.10g}mm"


SCALE_SOURCES = ("give exactly one source of scale: a printed marker's size in mm, a printed ChArUco board "
                 f"({CHARUCO_SYNTAX}), or one known dimension of the spec (PARAM=VALUE)")


def scale_source(
    marker_size_mm: float | None, known_dimension: str | None, charuco: CharucoSpec | str | None = None
) -> tuple[float | None, str | None, CharucoSpec | None]:
    """Exactly one source of scale, checked: ``(marker_size_mm, known_dimension, charuco)`` with
    the others None; :class:`ScaleError` (4000) for none, two or three, or a bad value."""
    if sum(x is not None for x in (marker_size_mm, known_dimension, charuco)) != 1:
        raise ScaleError(SCALE_SOURCES)
    if marker_size_mm is not None:
        return check_marker_mm(marker_size_mm), None, None
    if charuco is not None:
        return None, None, parse_charuco(charuco) if isinstance(charuco, str) else charuco
    assert known_dimension is not None
    if "=" not in known_dimension:
        raise ScaleError(f"known dimension {known_dimension[:60]!r}: write PARAM=VALUE, e.g. f.diameter=80mm")
    return None, known_dimension, None


__all__ = [
    "CHARUCO_DICTIONARIES",
    "CHARUCO_SYNTAX",
    "MAX_BOARD_SQUARES",
    "MAX_DIMENSION_MM",
    "MAX_MARKER_MM",
    "CharucoSpec",
    "charuco_dictionary",
    "check_marker_mm",
    "known_dimension_text",
    "parse_charuco",
    "scale_source",
]
