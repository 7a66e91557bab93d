"""visual_coding: a screenshot or a sketch → one self-contained HTML page.

The model's answer is taken out of its Markdown fence, parsed as a browser would parse it
(html5lib), and reported with its parse errors and any outside resources it refers to (a
self-contained page has none). With ``options.render`` the page is also rendered back to a PNG
in headless chromium (:mod:`.render`, hostile-page rules), written as the request's artefact.
"""

from __future__ import annotations

from typing import Any

from vlserve.config import Rendering, Settings
from vlserve.schemas import InferOptions
from vlserve.tasks.base import InputRules, Task, TaskInput
from vlserve.tasks.markup import external_resources, parse_html, strip_fences
from vlserve.tasks.visual_coding.render import render_png

PNG_NAME = "page.png"


class VisualCoding(Task):
    name = "visual_coding"
    summary = ("Recreate a screenshot or sketch as one self-contained HTML page (checked by an HTML5 parser); "
               "options.render: also a PNG of it, rendered offline.")
    rules = InputRules(images=(1, 1))
    system_prompt = (
        "You are an expert front-end developer. Recreate the user's screenshot or sketch as a single "
        "self-contained HTML5 file: semantic HTML with all CSS in one <style> element, no JavaScript, "
        "no external resources (no links to stylesheets, fonts, scripts or remote images; draw icons "
        "with CSS or inline SVG, use placeholders for photos). Match the layout, colours, text and "
        "proportions. Output only the HTML, in one ```html code block."
    )
    default_instruction = "Write the HTML page that reproduces this image."
    defaults = {"max_tokens": 2048, "temperature": 0.0}
    task_options = ("render",)

    def __init__(self, rendering: Rendering | None = None) -> None:
        self.rendering = rendering  # set: render the page back (options.render)

    def configure(self, options: InferOptions, settings: Settings) -> Task:
        super().configure(options, settings)
        return VisualCoding(settings.rendering) if options.render else self

    def answer(self, text: str, inp: TaskInput) -> dict[str, Any]:
        html = strip_fences(text)
        parsed = parse_html(html)
        outside = external_resources(parsed.document)
        warnings = parsed.warnings()
        if outside:
            warnings.append(f"the page refers to {len(outside)} outside resource(s), so it is not self-contained")
        result: dict[str, Any] = {
            "html": html,
            "valid": parsed.has_markup and not parsed.cut_off,
            "parse_errors": len(parsed.errors),
            "external_resources": outside,
            "image_size": list(inp.images[0].size) if inp.images else None,
            "render": None,
            "warnings": warnings,
        }
        if self.rendering is not None:
            result["render"] = self._render(html, inp, self.rendering, warnings)
        return result

    def _render(self, html: str, inp: TaskInput, rendering: Rendering, warnings: list[str]) -> dict[str, Any] | None:
        if inp.artifacts_dir is None:
            warnings.append("no picture: this server has no artefact directory")
            return None
        rendered = render_png(html, inp.artifacts_dir / PNG_NAME, rendering)
        warnings.extend(rendered.warnings)
        if rendered.path is None:
            return None
        return {"file": inp.artifacts_url + PNG_NAME, "width": rendered.width, "height": rendered.height,
                "blocked_requests": len(rendered.blocked)}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": {
            "render": "true: also render the page to a PNG (rendering.width × rendering.height viewport, scripts "
                      "off, no network); answer.render.file is its URL under /artifacts"}}


__all__ = ["VisualCoding"]
