"""Object specs → CAD and meshes for vlserve's 3D reconstruction.

A vision-language model (or a person, or :func:`parse_description`) fills an
:class:`ObjectSpec`; :func:`compile_spec` turns it into a watertight solid with manifold3d CSG;
:func:`export` writes GLB/STL/OBJ/PLY, STEP (build123d), OpenSCAD, a Blender script and a PNG
preview (one registry of formats: :data:`FORMATS`). :func:`spec_json_schema` is the schema a
constrained decoder follows.

A pure geometry library: nothing here imports the tasks, the runtime, the API, the service or the
scheduler (``tests/recon3d/test_r3d_layering.py`` checks the import graph). The model's prompts
and the photo checks live in :mod:`vlserve.tasks.multiview_3d`, the commands in
:mod:`vlserve.cli.recon3d`.

Importing this package is cheap: it loads the pydantic spec only. manifold3d and trimesh (extra
``recon3d``) load on the first compile, build123d (extra ``cad``) on the first STEP export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlserve.recon3d.errors import GeometryError, SpecError
from vlserve.recon3d.schema import spec_json_schema
from vlserve.recon3d.spec import SPEC_VERSION, ObjectSpec
from vlserve.recon3d.validation import load_spec

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel, compile_spec
    from vlserve.recon3d.exporters import FORMATS, ExportedFile, export, export_files
    from vlserve.recon3d.text import TextDraft, parse_description

_LAZY = {
    "CompiledModel": "vlserve.recon3d.compiler",
    "compile_spec": "vlserve.recon3d.compiler",
    "FORMATS": "vlserve.recon3d.exporters",
    "ExportedFile": "vlserve.recon3d.exporters",
    "export": "vlserve.recon3d.exporters",
    "export_files": "vlserve.recon3d.exporters",
    "TextDraft": "vlserve.recon3d.text",
    "parse_description": "vlserve.recon3d.text",
}

__all__ = [
    "FORMATS",
    "SPEC_VERSION",
    "CompiledModel",
    "ExportedFile",
    "GeometryError",
    "ObjectSpec",
    "SpecError",
    "TextDraft",
    "compile_spec",
    "export",
    "export_files",
    "load_spec",
    "parse_description",
    "spec_json_schema",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the compiler and exporters (and their heavy deps) load on first use
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vlserve.recon3d' has no attribute {name!r}")
