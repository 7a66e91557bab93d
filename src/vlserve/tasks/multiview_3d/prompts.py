"""What the model is told: walk through the views, the parts, their dimensions, then the spec.

The answer itself is constrained to the object spec's JSON Schema, so the reasoning steps guide
the model's thinking while the decoder guarantees the document's shape.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "You are a mechanical designer reconstructing a physical object from photographs taken from "
    "different viewpoints. You describe the object's 3D structure so that CAD software can rebuild "
    "it: solid primitives, templates for known families (flange, impeller, gear, bracket, "
    "enclosure, table, chair, shelf), boolean operations for holes and cut-outs, and patterns for "
    "repeated features. Use symmetry and common design conventions to complete hidden regions."
)

INSTRUCTION = (
    "Reconstruct the object in these photos.\n"
    "1. Views: decide which direction each photo looks from and which features appear in several views.\n"
    "2. Parts: list the object's main bodies and features (holes, bores, ribs, legs, blades).\n"
    "3. Dimensions: estimate sizes from proportions and any known reference; state the units.\n"
    "4. Spec: write the object spec as JSON following the schema: the first part a union body, "
    "holes as subtract parts, repeated features with a pattern, and a one-sentence description."
)


def instruction(note: str) -> str:
    """The instruction, with the user's own notes (sizes, material) appended when given."""
    extra = note.strip()
    return f"{INSTRUCTION}\nNotes from the user: {extra}" if extra else INSTRUCTION


TEXT_SYSTEM_PROMPT = (
    "You are a mechanical designer. You turn a plain description of an object into an object spec that "
    "CAD software rebuilds: solid primitives, templates for known families (flange, impeller, gear, "
    "bracket, enclosure, table, chair, shelf), boolean operations for holes and cut-outs, and patterns "
    "for repeated features. Use every number the description states, in its unit; choose sensible "
    "values for what it leaves open."
)


def text_messages(description: str) -> tuple[str, str]:
    """(system, user) prompts for writing a spec from a description, in English or Chinese."""
    user = (
        f"Description: {description.strip()}\n"
        "Write the object spec as JSON following the schema: the first part a union body, holes as "
        "subtract parts, repeated features with a pattern, the description copied into 'description'."
    )
    return TEXT_SYSTEM_PROMPT, user
