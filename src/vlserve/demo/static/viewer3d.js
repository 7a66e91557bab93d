// multiview_3d results: the GLB in an interactive viewer (Google's <model-viewer>, vendored),
// a download link per exported file, and the object spec as editable JSON to rebuild from.

import { ApiError } from "./api.js";
import { t } from "./i18n.js";
import { el } from "./render.js";

// `rebuild(spec)` sends an edited spec to the server and resolves to a note for under the button
// ("" when the new model is shown).
export async function show3D(view, answer, api, rebuild) {
  await import("./vendor/model-viewer.min.js"); // 1 MB: loaded only when a 3D result arrives
  const viewer = el("model-viewer", { "camera-controls": "", "touch-action": "pan-y", "shadow-intensity": "0.6",
                                      exposure: "1.1", alt: answer.description || "3D model", id: "viewer" });
  viewer.setAttribute("src", await fetchable(api, answer.files.glb));
  const downloads = el("ul", { class: "downloads" });
  for (const [format, path] of Object.entries(answer.files)) {
    const link = el("a", { href: api.artifactUrl(path), download: path.split("/").pop(), "data-format": format,
                           text: format.toUpperCase() });
    if (api.key) link.addEventListener("click", (event) => { event.preventDefault(); downloadWithKey(api, path); });
    downloads.append(el("li", {}, link));
  }
  const spec = el("textarea", { class: "spec", id: "spec", spellcheck: "false", "aria-label": t("spec") });
  spec.value = JSON.stringify(answer.spec, null, 2);
  const button = el("button", { type: "button", id: "rebuild", text: t("rebuild") });
  const note = el("p", { class: "note", id: "rebuild-note" });
  button.addEventListener("click", async () => {
    let parsed;
    try {
      parsed = JSON.parse(spec.value);
    } catch (err) {
      note.textContent = t("invalid_json", err.message);
      return;
    }
    button.disabled = true;
    note.textContent = "";
    try {
      note.textContent = await rebuild(parsed);
    } finally {
      button.disabled = false;
    }
  });
  view.append(viewer, el("p", { class: "note", text: t("viewer_hint") }),
    el("h3", { text: t("downloads") }), downloads);
  if (answer.warnings?.length) view.append(el("p", { class: "warnings", text: answer.warnings.join("; ") }));
  view.append(el("h3", { text: t("spec") }), spec, el("div", { class: "actions" }, button), note);
}

// model-viewer fetches by URL with no headers; with a key typed into the page we fetch it ourselves.
async function fetchable(api, path) {
  if (!api.key) return api.artifactUrl(path);
  const response = await fetch(api.artifactUrl(path), { headers: api.headers() });
  if (!response.ok) throw new ApiError(response.status === 404 ? 4040 : 5000, response.statusText);
  return URL.createObjectURL(await response.blob());
}

async function downloadWithKey(api, path) {
  const a = el("a", { href: await fetchable(api, path), download: path.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
}
