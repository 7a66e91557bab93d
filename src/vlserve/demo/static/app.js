// The demo page: pick a task, add inputs, stream the answer, show it in its natural form.
// It speaks only the public task API (/tasks, /infer_stream, /jobs, /artifacts), through the
// demo app's pass-through ("api/") or, when the server itself serves the page at /ui, directly.

import { Api, ApiError } from "./api.js";
import { getLang, setLang, t, taskHint, VIEW_LABELS } from "./i18n.js";
import { JobList } from "./jobs.js";
import { renderMarkdown } from "./markdown.js";
import { chartTable, drawBoxes, el, plotChart, timestampedAnswer } from "./render.js";
import { show3D } from "./viewer3d.js";

const $ = (id) => document.getElementById(id);
const MAX_RETRIES = 3;
const ALL_FORMATS = ["glb", "stl", "obj", "ply", "step", "scad", "py", "png"];

const state = {
  tasks: [],
  images: [], // {name, dataUrl, label}
  video: null, // {name, dataUrl, objectUrl, start, end}
  documents: [], // {name, dataUrl}
  note: "", // what the page could not take from the last files added
  controller: null,
  lastError: null,
  lastMeta: null,
};
let api;
let jobs;

// ---------------------------------------------------------------- start-up

async function init() {
  const saved = localStorage.getItem("vlserve-demo-lang");
  setLang(saved || (navigator.language?.startsWith("zh") ? "zh" : "en"));
  $("lang").textContent = getLang() === "zh" ? "English" : "中文";
  api = new Api(await apiBase());
  api.key = sessionStorage.getItem("vlserve-demo-key") || "";
  jobs = new JobList(api, $("jobs"), { onShow: showJob, onError: showError });
  $("api-key").value = api.key;
  wire();
  fillViewLabels();
  await loadTasks();
  checkReady();
  document.body.dataset.ready = "1"; // for tests and scripts: the page is wired up
}

async function apiBase() {
  // `vlserve demo` answers config.json; the server's own /ui mount does not (the API is one level up).
  try {
    const response = await fetch("config.json");
    if (response.ok) {
      const config = await response.json();
      $("server-url").textContent = config.server;
      return config.api;
    }
  } catch {
    // fall through
  }
  $("server-url").textContent = new URL("../", document.baseURI).href;
  return "../";
}

async function checkReady() {
  const badge = $("server-status");
  try {
    const response = await fetch(api.url("readyz"));
    const ready = response.ok;
    const key = ready ? "ready" : response.headers.has("x-vlserve-demo-unreachable") ? "unreachable" : "not_ready";
    badge.textContent = t(key);
    badge.className = `status ${ready ? "ok" : "bad"}`;
    badge.dataset.key = key;
    if (!ready) setTimeout(checkReady, 3000);
  } catch {
    badge.textContent = t("unreachable");
    badge.className = "status bad";
    badge.dataset.key = "unreachable";
    setTimeout(checkReady, 5000);
  }
}

async function loadTasks(attempt = 0) {
  try {
    const data = await api.call("GET", "tasks");
    state.tasks = data.tasks;
    hideError();
  } catch (err) {
    showError(err, attempt < MAX_RETRIES ? () => loadTasks(attempt + 1) : null);
    return;
  }
  const select = $("task");
  select.replaceChildren(...state.tasks.map((task) => el("option", { value: task.name, text: task.name })));
  const wanted = new URLSearchParams(location.search).get("task");
  if (wanted && state.tasks.some((task) => task.name === wanted)) select.value = wanted;
  onTaskChange();
}

function currentTask() {
  return state.tasks.find((task) => task.name === $("task").value);
}

function range([lo, hi]) {
  return lo === hi ? String(lo) : `${lo}–${hi}`;
}

function describeRules(task) {
  const parts = [];
  const inputs = task.inputs;
  if (inputs.images[1] > 0) parts.push(t("rules_images", range(inputs.images)));
  if (inputs.videos[1] > 0) parts.push(t("rules_videos", range(inputs.videos)));
  if (inputs.documents[1] > 0) parts.push(t("rules_documents", range(inputs.documents)));
  if (inputs.text_required) parts.push(t("rules_text"));
  return parts.join(" · ") || t("rules_none");
}

// The task's words (hint, rules, labels), in the current language.
function describeTask() {
  const task = currentTask();
  if (!task) return;
  $("task-hint").textContent = taskHint(task.name, task.summary);
  $("task-hint").title = task.summary;
  $("task-rules").textContent = describeRules(task);
  const required = task.inputs.text_required;
  $("text-label").dataset.i18n = required ? "question" : "question_optional";
  $("text-label").textContent = t($("text-label").dataset.i18n);
  renderAttachments();
}

// Another task: its words, and its default options.
function onTaskChange() {
  const task = currentTask();
  if (!task) return;
  describeTask();
  const defaults = task.defaults || {};
  $("opt-max-tokens").value = defaults.max_tokens ?? "";
  $("opt-temperature").value = defaults.temperature ?? "";
  $("opt-top-p").value = defaults.top_p ?? "";
  $("opt-step-row").hidden = task.name !== "multiview_3d";
}

// ---------------------------------------------------------------- inputs

function fillViewLabels() {
  $("view-labels").replaceChildren(...VIEW_LABELS.map((label) => el("option", { value: label })));
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function kindOf(file) {
  const name = file.name.toLowerCase();
  if (file.type === "application/pdf" || name.endsWith(".pdf")) return "document";
  if (file.type.startsWith("image/") || /\.(jpe?g|png|webp|bmp|gif|tiff?)$/.test(name)) return "image";
  if (file.type.startsWith("video/") || /\.(mp4|mov|avi|webm|mkv)$/.test(name)) return "video";
  return null;
}

async function addFiles(files) {
  const notes = [];
  for (const file of files) {
    const kind = kindOf(file);
    if (!kind) {
      notes.push(t("unsupported_file", file.name));
      continue;
    }
    const dataUrl = await readAsDataUrl(file);
    if (kind === "image") {
      state.images.push({ name: file.name || "pasted.png", dataUrl, label: VIEW_LABELS[state.images.length] ?? "" });
    } else if (kind === "video") {
      if (state.video) URL.revokeObjectURL(state.video.objectUrl);
      state.video = { name: file.name, dataUrl, objectUrl: URL.createObjectURL(file), start: "", end: "" };
    } else {
      state.documents.push({ name: file.name, dataUrl, pages: "" });
    }
  }
  state.note = notes.join(" ");
  renderAttachments();
}

function removeButton(onClick) {
  const button = el("button", { type: "button", class: "remove", text: "✕", title: t("remove"), "aria-label": t("remove") });
  button.addEventListener("click", onClick);
  return button;
}

function numberInput(value, onInput, attrs = {}) {
  const input = el("input", { type: "number", min: "0", step: "0.1", ...attrs });
  input.value = value;
  input.addEventListener("input", () => onInput(input.value));
  return input;
}

function renderAttachments() {
  const list = $("attachments");
  const multiview = currentTask()?.name === "multiview_3d";
  const items = [];
  state.images.forEach((image, i) => {
    const li = el("li", { class: "image" }, el("img", { src: image.dataUrl, alt: image.name }),
      el("span", { class: "name", text: image.name, title: image.name }));
    if (multiview) {
      const label = el("input", { type: "text", list: "view-labels", class: "view-label", maxlength: "32",
                                  "aria-label": `${t("view_label")} ${i + 1}`, placeholder: t("view_label") });
      label.value = image.label;
      label.addEventListener("input", () => { image.label = label.value; });
      li.append(el("label", {}, `${t("view_label")} `, label));
    }
    li.append(removeButton(() => { state.images.splice(i, 1); renderAttachments(); }));
    items.push(li);
  });
  if (state.video) {
    const video = state.video;
    items.push(el("li", { class: "video" },
      el("video", { src: video.objectUrl, controls: "", muted: "", preload: "metadata" }),
      el("span", { class: "name", text: video.name, title: video.name }),
      el("label", {}, `${t("start_s")} `, numberInput(video.start, (v) => { video.start = v; }, { class: "video-start" })),
      el("label", {}, `${t("end_s")} `, numberInput(video.end, (v) => { video.end = v; }, { class: "video-end" })),
      removeButton(() => { URL.revokeObjectURL(video.objectUrl); state.video = null; renderAttachments(); })));
  }
  state.documents.forEach((doc, i) => {
    const pages = el("input", { type: "text", class: "pages", placeholder: t("all_pages"), title: t("pages_hint"),
                                maxlength: "16" });
    pages.value = doc.pages;
    pages.addEventListener("input", () => { doc.pages = pages.value; });
    items.push(el("li", { class: "document" }, el("span", { class: "name", text: `📄 ${doc.name}`, title: doc.name }),
      el("label", { title: t("pages_hint") }, `${t("pages")} `, pages),
      removeButton(() => { state.documents.splice(i, 1); renderAttachments(); })));
  });
  list.replaceChildren(...items);
  $("input-note").textContent = [state.note, state.documents.length ? t("pages_hint") : ""].join(" ").trim();
}

// ---------------------------------------------------------------- requests

function options() {
  const out = {};
  const int = (id) => ($(id).value === "" ? null : Math.round(Number($(id).value)));
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  const set = (key, value) => { if (value !== null && Number.isFinite(value)) out[key] = value; };
  set("max_tokens", int("opt-max-tokens"));
  set("temperature", num("opt-temperature"));
  set("top_p", num("opt-top-p"));
  set("seed", int("opt-seed"));
  if (currentTask()?.name === "multiview_3d" && $("opt-step").checked) out.formats = ALL_FORMATS;
  return out;
}

function requestBody() {
  const task = currentTask();
  const body = { task: task.name, text: $("text").value, options: options() };
  if (state.images.length) body.images = state.images.map((image) => image.dataUrl);
  if (task.name === "multiview_3d" && state.images.some((image) => image.label)) {
    body.labels = state.images.map((image) => image.label.trim());
  }
  if (state.video) {
    const video = { url: state.video.dataUrl };
    if (state.video.start !== "") video.start = Number(state.video.start);
    if (state.video.end !== "") video.end = Number(state.video.end);
    body.videos = [video];
  }
  if (state.documents.length) body.documents = state.documents.map(documentInput);
  return body;
}

// "3" → page 3, "2-5" → pages 2 to 5, "4-" → page 4 to the end, "" → every page (a bare URL).
function parsePages(text) {
  const m = /^\s*(\d+)\s*(?:([-–~])\s*(\d+)?)?\s*$/.exec(text ?? "");
  if (!m) return null;
  const first = Number(m[1]);
  const last = m[3] !== undefined ? Number(m[3]) : m[2] ? null : first;
  if (first < 1 || (last !== null && last < first)) return null;
  return last === null ? { first_page: first } : { first_page: first, last_page: last };
}

function documentInput(doc) {
  if (!doc.pages.trim()) return doc.dataUrl;
  return { url: doc.dataUrl, ...parsePages(doc.pages) };
}

// Mistakes the page can name before sending anything; the server checks everything else.
function precheck(task) {
  const missing = [];
  const visual = state.images.length + (state.video ? 1 : 0) + state.documents.length;
  if (task.inputs.text_required && !$("text").value.trim()) missing.push(t("rules_text"));
  for (const doc of state.documents) {
    if (doc.pages.trim() && !parsePages(doc.pages)) return t("bad_pages", doc.name, doc.pages);
  }
  if (visual === 0 && (task.inputs.images[1] + task.inputs.videos[1] + task.inputs.documents[1]) > 0) {
    missing.push(describeRules(task));
  }
  return missing.length ? t("need_inputs", missing.join("; ")) : null;
}

function clearOutput() {
  hideError();
  const box = $("job-progress");
  box.hidden = true;
  delete box.dataset.events;
  delete box.dataset.status;
  delete box.dataset.job;
  $("answer").textContent = "";
  $("metadata").replaceChildren();
  $("view").replaceChildren();
  state.lastMeta = null;
}

function setBusy(busy) {
  $("run").disabled = busy;
  $("stop").disabled = !busy;
  $("answer").classList.toggle("streaming", busy);
  document.body.dataset.busy = busy ? "1" : "";
}

async function run(attempt = 0) {
  const task = currentTask();
  if (!task) return;
  clearOutput();
  const problem = precheck(task);
  if (problem) {
    showNote(problem);
    return;
  }
  const body = requestBody();
  const snapshot = { images: state.images.map((image) => image.dataUrl), videoUrl: state.video?.objectUrl ?? null };
  // Tasks the server runs only as jobs (/tasks says jobs_only: long videos) are submitted as one and
  // followed through its event stream; the answer is shown the same way when it is done.
  if (task.jobs_only === true) return runAsJob(task, body, snapshot, attempt);
  state.controller = new AbortController();
  const started = performance.now();
  let firstToken = null;
  let text = "";
  setBusy(true);
  $("answer").dataset.state = "streaming";
  try {
    for await (const event of api.stream(body, state.controller.signal)) {
      if (event.type === "token") {
        if (firstToken === null) firstToken = performance.now() - started;
        text += event.token;
        $("answer").textContent = text;
      } else if (event.type === "final") {
        const total = performance.now() - started;
        $("answer").textContent = typeof event.answer === "string" ? event.answer : JSON.stringify(event.answer, null, 2);
        state.lastMeta = { event, firstToken, total };
        renderMeta();
        await showResult(task.name, event.answer, snapshot);
        $("answer").dataset.state = "done";
      }
    }
  } catch (err) {
    if (err.name === "AbortError") {
      $("answer").dataset.state = "stopped";
    } else {
      $("answer").dataset.state = "error";
      showError(err, attempt < MAX_RETRIES ? () => run(attempt + 1) : null);
    }
  } finally {
    setBusy(false);
    state.controller = null;
  }
}

async function runAsJob(task, body, snapshot, attempt) {
  state.controller = new AbortController();
  const started = performance.now();
  let jobId = null;
  setBusy(true);
  $("answer").dataset.state = "job";
  try {
    const reply = await api.call("POST", "jobs", body, state.controller.signal);
    jobId = reply.jobs[0].id;
    $("job-progress").dataset.job = jobId;
    for await (const event of api.jobEvents(jobId, state.controller.signal)) {
      showJobProgress(event);
      if (event.type !== "final") continue;
      if (event.status === "failed") {
        throw new ApiError(event.error?.code ?? 5000, event.error?.msg ?? "", { requestId: `job_${event.id}` });
      }
      if (event.status !== "succeeded") {
        $("answer").dataset.state = "stopped";
        break;
      }
      const result = event.result.result;
      $("answer").textContent = typeof result.answer === "string" ? result.answer : JSON.stringify(result.answer, null, 2);
      state.lastMeta = { event: { ...result, request_id: event.result.request_id }, firstToken: null,
        total: performance.now() - started };
      renderMeta();
      await showResult(task.name, result.answer, snapshot);
      $("answer").dataset.state = "done";
    }
  } catch (err) {
    if (err.name === "AbortError") {
      $("answer").dataset.state = "stopped";
      if (jobId) api.call("DELETE", `jobs/${jobId}`).catch(() => {}); // Stop cancels the job as well
    } else {
      $("answer").dataset.state = "error";
      // Only a refused submission is retried: a job that ran and failed would fail again.
      showError(err, attempt < MAX_RETRIES && jobId === null ? () => run(attempt + 1) : null);
    }
  } finally {
    setBusy(false);
    state.controller = null;
  }
}

// One event of a job's stream: its status and progress bar above the answer.
function showJobProgress(event) {
  const box = $("job-progress");
  const progress = event.status === "succeeded" ? 1 : Number(event.progress ?? 0);
  box.hidden = false;
  box.dataset.status = event.status;
  box.dataset.events = String(Number(box.dataset.events || 0) + 1);
  $("job-bar").value = progress;
  $("job-status").textContent = t("job_progress", t(`status_${event.status}`), Math.round(progress * 100));
}

// ---------------------------------------------------------------- results

const fmtMs = (ms) => (ms === null || ms === undefined ? "—" : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`);

function renderMeta() {
  if (!state.lastMeta) return;
  const { event, firstToken, total } = state.lastMeta;
  const m = event.metadata || {};
  const rows = [
    ["ttft", fmtMs(m.ttft_ms ?? firstToken)],
    ["total", fmtMs(m.processing_time_ms ?? total)],
    ["tokens", `${m.input_tokens ?? "—"} / ${m.output_tokens ?? "—"}`],
    ["confidence", event.confidence === null || event.confidence === undefined ? "—" : event.confidence.toFixed(3)],
    ["experts", m.activated_experts ?? "—"],
    ["degraded", t(m.degraded ? "yes" : "no")],
    ["model", m.model ?? "—"],
    ["finish", m.finish_reason ?? "—"],
  ];
  const dl = $("metadata");
  dl.replaceChildren(...rows.map(([key, value]) => el("div", { "data-key": key },
    el("dt", { text: t(key) }), el("dd", { text: String(value) }))));
  if (m.warnings?.length) {
    dl.append(el("div", { "data-key": "warnings" }, el("dt", { text: t("warnings") }),
      el("dd", { class: "warnings", text: m.warnings.join("; ") })));
  }
}

async function showResult(taskName, answer, snapshot) {
  const view = $("view");
  view.replaceChildren();
  view.dataset.task = taskName;
  if (taskName === "grounding" && answer?.objects && snapshot.images[0]) {
    await drawBoxes(view, snapshot.images[0], answer);
  } else if (taskName === "chart_parse" && answer?.series) {
    view.append(el("h3", { text: t("chart") }), plotChart(answer), el("h3", { text: t("table") }), chartTable(answer));
  } else if ((taskName === "ocr" || taskName === "doc_analyze") && typeof answer === "string") {
    const box = el("div", { class: "markdown" });
    box.innerHTML = renderMarkdown(answer); // safe: renderMarkdown escapes every piece of the text
    view.append(box);
  } else if (taskName === "video_qa" && typeof answer === "string" && snapshot.videoUrl) {
    const video = el("video", { src: snapshot.videoUrl, controls: "", muted: "" });
    view.append(el("div", { class: "video-result" }, video, timestampedAnswer(answer, video)));
  } else if (taskName === "multiview_3d" && answer?.files) {
    await show3D(view, answer, api, rebuildSpec);
  }
  view.dataset.rendered = "1";
}

async function rebuildSpec(spec) {
  hideError();
  try {
    const formats = $("opt-step").checked ? ALL_FORMATS : undefined;
    const built = await api.call("POST", "recon3d/build", { spec, formats });
    const answer = built.result.answer;
    $("answer").textContent = JSON.stringify(answer, null, 2);
    await showResult("multiview_3d", answer, {});
    return "";
  } catch (err) {
    // An older server has no build endpoint: say what to do instead.
    if (err instanceof ApiError && err.code === 4040) return t("rebuild_unsupported");
    showError(err);
    return "";
  }
}

// ---------------------------------------------------------------- errors

function hideError() {
  const box = $("error");
  box.hidden = true;
  box.replaceChildren();
  clearInterval(box.timer);
  state.lastError = null;
}

function showNote(text) {
  hideError();
  const box = $("error");
  box.hidden = false;
  box.dataset.code = "";
  box.append(el("strong", { text }));
}

function showError(err, retry = null) {
  hideError();
  state.lastError = { err, retry };
  const box = $("error");
  const code = err instanceof ApiError ? err.code : 0;
  box.hidden = false;
  box.dataset.code = String(code);
  const known = code && t(`err_${code}`) !== `err_${code}`;
  box.append(el("strong", { class: "title", text: known ? t(`err_${code}`) : t("err_generic") }));
  if (known) box.append(el("p", { class: "fix", text: `${t("what_to_do")}: ${t(`fix_${code}`)}` }));
  const detail = [code ? `[${code}]` : "", err.message, err.requestId ? `(${t("request_id")} ${err.requestId})` : ""];
  box.append(el("p", { class: "detail", text: detail.filter(Boolean).join(" ") }));
  if (code === 4001) {
    $("connection").open = true; // where the key goes
    $("api-key").focus();
  }
  if (retry && (code === 2001 || code === 4029)) {
    let left = Math.max(1, Math.ceil(err.retryAfter ?? 2));
    const countdown = el("p", { class: "countdown", text: t("retrying_in", left) });
    box.append(countdown);
    box.timer = setInterval(() => {
      left -= 1;
      countdown.textContent = t("retrying_in", left);
      if (left <= 0) {
        clearInterval(box.timer);
        retry();
      }
    }, 1000);
  }
}

// ---------------------------------------------------------------- batch jobs

async function submitJobs() {
  const task = currentTask();
  if (!task) return;
  hideError();
  const problem = precheck(task);
  if (problem) {
    showNote(problem);
    return;
  }
  const whole = requestBody();
  // A task that reads one image at a time gets one job per image: the usual batch ("caption these").
  const split = task.inputs.images[1] === 1 && state.images.length > 1;
  const bodies = split ? state.images.map((image) => ({ ...whole, images: [image.dataUrl] })) : [whole];
  let reply;
  try {
    reply = await api.call("POST", "jobs", bodies);
  } catch (err) {
    showError(err);
    return;
  }
  $("no-jobs").hidden = true;
  reply.jobs.forEach((job, i) => jobs.add(job, split ? [state.images[i].dataUrl] : state.images.map((x) => x.dataUrl)));
}

async function showJob(entry) {
  clearOutput();
  const job = entry.job;
  if (job.status === "failed") {
    showError(new ApiError(job.error?.code ?? 5000, job.error?.msg ?? "", { requestId: `job_${job.id}` }));
    return;
  }
  const result = job.result?.result;
  if (!result) return;
  $("answer").textContent = typeof result.answer === "string" ? result.answer : JSON.stringify(result.answer, null, 2);
  state.lastMeta = { event: { ...result, request_id: job.result.request_id }, firstToken: null, total: null };
  renderMeta();
  await showResult(job.task, result.answer, { images: entry.images, videoUrl: null });
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("task").addEventListener("change", onTaskChange);
  $("run").addEventListener("click", () => run());
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("submit-jobs").addEventListener("click", submitJobs);
  $("clear").addEventListener("click", () => {
    state.images = [];
    if (state.video) URL.revokeObjectURL(state.video.objectUrl);
    state.video = null;
    state.documents = [];
    state.note = "";
    renderAttachments();
  });
  $("pick").addEventListener("click", () => $("file-input").click());
  $("camera").addEventListener("click", () => $("camera-input").click());
  for (const id of ["file-input", "camera-input"]) {
    $(id).addEventListener("change", async (event) => {
      await addFiles([...event.target.files]);
      event.target.value = "";
    });
  }
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addFiles([...event.dataTransfer.files]);
  });
  document.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  $("api-key").addEventListener("change", () => {
    api.key = $("api-key").value.trim();
    sessionStorage.setItem("vlserve-demo-key", api.key);
    if (!state.tasks.length) loadTasks(); // the list failed before: try again with the key
  });
  $("lang").addEventListener("click", () => {
    setLang(getLang() === "zh" ? "en" : "zh");
    localStorage.setItem("vlserve-demo-lang", getLang());
    $("lang").textContent = getLang() === "zh" ? "English" : "中文";
    describeTask();
    renderMeta();
    const badge = $("server-status");
    if (badge.dataset.key) badge.textContent = t(badge.dataset.key);
    jobs.refresh();
    if (state.lastError) showError(state.lastError.err, state.lastError.retry);
  });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run();
  });
}

init();
