"""Photos + a coarse spec → a refined spec and a report: the whole "fine fitting" stage.

    photos ──run_sfm──▶ points, cameras ──marker_frame / plane_frame──▶ world (mm, z up)
           ──object_points──▶ the object's points ──fit_spec(spec)──▶ refined spec + report

The model (or a person) supplies the topology and rough numbers; the photos supply the
measurements. Scale comes from a printed ArUco marker (``marker_size_mm``), a printed ChArUco
board (``charuco=CharucoSpec(5, 7, 30, 22, "DICT_5X5_100")``) or from one known dimension of the
spec (``known_dimension="f.diameter=80"``); exactly one is required.

When the photos cannot measure the object (too few register, no marker in them, too few points
on the object), :func:`refine` raises :class:`RefineError`; with ``on_failure="keep"`` it
returns the spec unrefined instead, with ``refined: false`` and the reason in the report — what
a job that was asked to refine an already-built model wants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.refine._deps import require
from vlserve.recon3d.refine.charuco import charuco_frame
from vlserve.recon3d.refine.errors import RefineError, ScaleError, TooFewViewsError
from vlserve.recon3d.refine.fit import FitOptions, FitResult, fit_spec
from vlserve.recon3d.refine.options import SCALE_SOURCES, CharucoSpec
from vlserve.recon3d.refine.params import describe, parse_known_dimension, spec_parameters
from vlserve.recon3d.refine.points import level_frame, object_points
from vlserve.recon3d.refine.scale import WorldFrame, marker_frame, plane_frame
from vlserve.recon3d.refine.sfm import SfmOptions, SfmResult, run_sfm
from vlserve.recon3d.refine.sightlines import Sightlines, surface_normals, through_observed_surface
from vlserve.recon3d.spec import ObjectSpec
from vlserve.recon3d.validation import load_spec

if TYPE_CHECKING:
    from vlserve.config import Recon3DRefine

TABLE_VIEWS = 3
"""a table point gives free space (:mod:`.sightlines`) only when at least this many photos saw it"""
FEW_VIEWS = 8
"""fewer registered views than this add a warning: expect larger errors"""


@dataclass(frozen=True)
class RefineOptions:
    """Everything bounded about one refinement (see :class:`SfmOptions`, :class:`FitOptions`)."""

    sfm: SfmOptions = field(default_factory=SfmOptions)
    fit: FitOptions = field(default_factory=FitOptions)
    max_reprojection_error_px: float = 2.0
    min_object_points: int = 200
    """fewer points on the object than this and the fit is underdetermined (bench/refine.py: at 4 views
    46–143 points made the block and the bracket worse than the guess): the spec is not refined"""


@dataclass
class RefineResult:
    """The refined spec (a dict that validates as an :class:`ObjectSpec`) and the report."""

    spec: dict[str, Any]
    report: dict[str, Any]
    fit: FitResult | None
    """None when the spec was returned unrefined (``on_failure="keep"``)"""
    sfm: SfmResult | None
    """None when structure-from-motion itself failed"""
    refined: bool = True
    reason: str | None = None
    """why the spec was returned unrefined"""


def refine_options(limits: Recon3DRefine) -> RefineOptions:
    """:class:`RefineOptions` from ``Settings.recon3d.refine`` (the configured bounds)."""
    return RefineOptions(
        sfm=SfmOptions(
            max_photos=limits.max_photos,
            max_image_size=limits.max_image_size,
            max_features=limits.max_features,
            min_registered=limits.min_registered,
            mapping_seconds=limits.mapping_seconds,
        ),
        fit=FitOptions(
            seconds=limits.fit_seconds,
            max_evaluations=limits.fit_evaluations,
            max_points=limits.fit_points,
            max_change=limits.max_change,
        ),
        min_object_points=limits.min_object_points,
    )


def refine(
    spec: ObjectSpec | dict[str, Any] | str | bytes | Path,
    photos: list[Path],
    *,
    marker_size_mm: float | None = None,
    known_dimension: str | None = None,
    options: RefineOptions | None = None,
    workdir: Path | None = None,
    on_failure: Literal["raise", "keep"] = "raise",
    charuco: CharucoSpec | None = None,
) -> RefineResult:
    """Refine ``spec`` against ``photos`` (raises RefineError / SpecError, code 4000).

    ``on_failure="keep"``: when the photos cannot measure the object (too few registered, no
    marker, too few points, the fit's limits), return the spec unrefined with the reason
    (``result.refined`` false, ``report["reason"]``) instead of raising. Errors of the call
    itself (no or two sources of scale, an unknown dimension name, an invalid spec) still raise.
    """
    options = options or RefineOptions()
    started = time.monotonic()
    model = load_spec(spec)
    if sum(x is not None for x in (marker_size_mm, known_dimension, charuco)) != 1:
        raise ScaleError(SCALE_SOURCES)
    known = None
    if known_dimension is not None:
        # checked before the slow SfM: a typo in the name fails at once
        known = parse_known_dimension(known_dimension, spec_parameters(model)[1], model.units)
    sfm: SfmResult | None = None
    try:
        sfm = run_sfm(photos, options=options.sfm, workdir=workdir)
        if charuco is not None:
            frame = charuco_frame(sfm, charuco)
        else:
            frame = marker_frame(sfm, marker_size_mm) if marker_size_mm is not None else plane_frame(sfm)
    except RefineError as err:
        if on_failure != "keep":
            raise
        return unrefined_result(model, photos, sfm, err, time.monotonic() - started)
    return refine_measured(model, sfm, frame, known=known, options=options, on_failure=on_failure, started=started)


def refine_measured(
    model: ObjectSpec,
    sfm: SfmResult,
    frame: WorldFrame,
    *,
    known: tuple[Any, float] | None = None,
    options: RefineOptions | None = None,
    on_failure: Literal["raise", "keep"] = "raise",
    started: float | None = None,
) -> RefineResult:
    """The part of :func:`refine` after structure-from-motion and scale: the object's points,
    free space, the fit and the report (``known``: a parsed known dimension, without a marker).
    Separate so that a harness can keep SfM results and re-run only the fit."""
    model = load_spec(model)
    options = options or RefineOptions()
    started = time.monotonic() if started is None else started
    photos = list(sfm.photos)
    # the table around the object fixes the ground plane better than the marker's four corners
    frame, tilt = level_frame(frame, sfm.points, sfm.errors, max_error_px=options.max_reprojection_error_px)
    try:
        selected = object_points(sfm.points, sfm.errors, frame, max_error_px=options.max_reprojection_error_px)
        if len(selected.points) < options.min_object_points:
            raise RefineError(
                f"only {len(selected.points)} points on the object were reconstructed; at least "
                f"{options.min_object_points} are needed to measure it: take more overlapping photos (8 or more) "
                "closer up, with the object filling more of each photo"
            )
        sightlines = None
        if sfm.observers:
            # every observation is a segment of free space: camera centre → the point it saw
            cameras = frame.apply(np.array([v.center for v in sfm.views]).reshape(-1, 3))
            # the object's points from two photos up, the table's from three: two rays always
            # meet where the pair's epipolar geometry allows, and a false match between two
            # photos puts a "table point" behind the object one of them saw (on the ChArUco
            # renders 10 % of the two-photo points lay where the block hides them, 1.7 % of the
            # three-photo ones, 0.2 % beyond); the object's own points count only the solid in
            # front of them (Sightlines.on_object), and a hole's far wall is often seen twice only
            tracks = [sfm.observers[i] for i in selected.indices]
            table = Sightlines.from_tracks(
                cameras, selected.ground, [sfm.observers[i] for i in selected.ground_indices], min_views=TABLE_VIEWS
            )
            sightlines = Sightlines.from_tracks(
                cameras, selected.points, tracks, min_views=2, on_object=True
            ) + table.without_points(behind_the_object(table, selected.points, cameras, tracks))
        fitted = fit_spec(
            model,
            selected.points,
            metric=frame.metric,
            known=known,
            support=selected.ground,
            options=options.fit,
            sightlines=sightlines,
            errors=sfm.errors[selected.indices] if len(selected.indices) == len(selected.points) else None,
        )
    except RefineError as err:
        if on_failure != "keep":
            raise
        return unrefined_result(model, photos, sfm, err, time.monotonic() - started)
    refined = load_spec(fitted.spec).model_dump(mode="json", exclude_none=True)
    warnings = list(fitted.notes)
    if len(sfm.views) < FEW_VIEWS:
        warnings.append(f"only {len(sfm.views)} photos registered: dimensions may be off by several per cent")
    if frame.board and frame.marker_side_spread > 0.03:
        warnings.append(
            f"the ChArUco board's corner distances give scales {100 * frame.marker_side_spread:.1f} % apart "
            "(10th to 90th percentile): are its sizes right, is it printed at 100 % and lying flat?"
        )
    elif frame.metric and frame.marker_side_spread > 0.03:
        warnings.append(
            f"the marker's measured sides differ by {100 * frame.marker_side_spread:.1f} %: "
            "is it printed square and lying flat?"
        )
    if fitted.residuals_after["inlier_share"] < 0.6:
        warnings.append("the refined spec explains less than 60 % of the points: its parts may not match the object")
    mm = 1.0 / fitted.pose.scale  # world units → mm
    report = {
        "name": model.name,
        "units": model.units,
        "refined": True,
        "views": sfm.summary(),
        "scale": {
            "source": _scale_source(frame.source, frame.metric, known, model.units),
            "ground": frame.source,
            "metric_marker": frame.metric,
            "marker_views": list(frame.marker_views),
            "marker_side_spread": round(frame.marker_side_spread, 4),
            "levelled_deg": round(tilt, 3),
            "corners": frame.corners,
            "charuco": frame.board,
        },
        "object_points": int(len(selected.points)),
        "parameters": [
            {
                "name": p.name,
                "place": p.place,
                "before": p.before,
                "after": p.after,
                "change": round(p.change, 5),
                "kind": p.kind,
                "assumed": p.assumed,
                "fixed": p.fixed,
                "observed": p.observed,
                "together": list(p.together),
            }
            for p in fitted.params
        ],
        "residuals_mm": {
            "before": {k: _mm(v, k, mm) for k, v in fitted.residuals_before.items()},
            "after": {k: _mm(v, k, mm) for k, v in fitted.residuals_after.items()},
        },
        "fit": {"evaluations": fitted.evaluations, "seconds": round(fitted.seconds, 2), "stopped": fitted.stopped},
        "warnings": warnings,
        "seconds": round(time.monotonic() - started, 2),
    }
    return RefineResult(refined, report, fitted, sfm)


def behind_the_object(
    lines: Sightlines, points: NDArray[np.float64], cameras: NDArray[np.float64], tracks: list[NDArray[np.int64]]
) -> NDArray[np.bool_]:
    """(o,) the ``lines`` that pass behind a surface the object's ``points`` show
    (:func:`.sightlines.through_observed_surface`: within the points' typical spacing — the
    median distance to the 4th nearest — of a point, a quarter of that inside its tangent plane):
    a table point one of whose own photos saw it through the object is a false one."""
    spatial = require("scipy.spatial")
    if len(points) < 5 or not len(lines):
        return np.zeros(len(lines), dtype=bool)
    spacing = float(np.median(spatial.cKDTree(points).query(points, k=5)[0][:, -1]))
    towards = np.array(
        [cameras[t].mean(axis=0) if len(t) else p + [0.0, 0.0, 1.0] for p, t in zip(points, tracks, strict=True)]
    )
    normals = surface_normals(points, towards)
    return through_observed_surface(lines, points, normals, radius=spacing, tolerance=0.25 * spacing)


def unrefined_result(
    model: ObjectSpec, photos: list[Path], sfm: SfmResult | None, err: RefineError, seconds: float
) -> RefineResult:
    """The spec as given, with a report that says why it was not refined."""
    data, params = spec_parameters(model)
    if sfm is not None:
        views = sfm.summary()
    else:
        registered = err.registered if isinstance(err, TooFewViewsError) else []
        unregistered = err.unregistered if isinstance(err, TooFewViewsError) else [Path(p).name for p in photos]
        views = {"photos": len(photos), "registered": registered, "unregistered": unregistered, "points": 0}
    report = {
        "name": model.name,
        "units": model.units,
        "refined": False,
        "reason": err.message,
        "code": err.code,
        "views": views,
        "parameters": [
            {
                "name": p.name,
                "place": describe(p, data),
                "before": p.value,
                "after": p.value,
                "change": 0.0,
                "kind": p.kind,
                "assumed": p.assumed,
                "fixed": False,
                "observed": False,
            }
            for p in params
        ],
        "warnings": [f"not refined: {err.message}"],
        "seconds": round(seconds, 2),
    }
    spec = model.model_dump(mode="json", exclude_none=True)
    return RefineResult(spec, report, None, sfm, refined=False, reason=err.message)


def _scale_source(source: str, metric: bool, known: tuple[Any, float] | None, units: str) -> str:
    if metric or known is None:
        return source
    return f"known dimension {known[0].name} = {known[1]:g} {units}"


def _mm(value: float, key: str, mm: float) -> float:
    return round(value if key == "inlier_share" else value * mm, 4)


def format_report(report: dict[str, Any]) -> str:
    """The report as plain text: views, scale, each dimension before/after, residuals, warnings."""
    views = report["views"]
    if report.get("refined") is False:
        lines = [
            f"{report['name']}: NOT REFINED ({len(views['registered'])}/{views['photos']} photos registered, "
            f"{report['seconds']:.1f} s): {report['reason']}",
            "the spec is returned as it was given",
        ]
        if views["unregistered"]:
            lines.append(f"not registered: {', '.join(views['unregistered'])}")
        return "\n".join(lines)
    lines = [
        f"{report['name']}: {len(views['registered'])}/{views['photos']} photos registered, "
        f"{views['points']} points ({report['object_points']} on the object), {report['seconds']:.1f} s",
    ]
    if views["unregistered"]:
        lines.append(f"not registered: {', '.join(views['unregistered'])}")
    lines.append(f"scale: {report['scale']['source']}")
    lines.append(f"{'parameter':<36} {'before':>10} {'after':>10} {'change':>9}  note")
    for p in report["parameters"]:
        change = f"{p['change']:+.3f}" if p["kind"] == "offset" else f"{100 * p['change']:+.1f} %"
        note = ", ".join(
            n
            for n, on in (
                ("fixed", p["fixed"]),
                ("assumed", p["assumed"]),
                ("not seen: kept", not p["observed"]),
                (f"only with {', '.join(p.get('together') or [])}", bool(p.get("together"))),
            )
            if on
        )
        lines.append(f"{p['name']:<36} {p['before']:>10.4g} {p['after']:>10.4g} {change:>9}  {note}")
    before, after = report["residuals_mm"]["before"], report["residuals_mm"]["after"]
    lines.append(
        f"point-to-surface distance (mm): median {before['median']:.3f} -> {after['median']:.3f}, "
        f"p90 {before['p90']:.3f} -> {after['p90']:.3f}; inliers {100 * before['inlier_share']:.0f} % -> "
        f"{100 * after['inlier_share']:.0f} %"
    )
    lines.extend(f"warning: {w}" for w in report["warnings"])
    return "\n".join(lines)
