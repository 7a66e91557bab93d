// Results in their natural form: boxes on the image, a chart re-plotted from its parsed data,
// clickable video timestamps. Everything drawn from the model's answer goes through canvas text
// or textContent, never innerHTML.

import { t } from "./i18n.js";

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
export const BOX_COLOR = "#ff00ff"; // one saturated colour the tests (and eyes) can find

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}
export { el };

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = reject;
    img.src = src;
  });
}

// Grounding: `answer.objects[i].box` is in pixels of the original image (`answer.image_size`).
export async function drawBoxes(container, imageSrc, answer) {
  const img = await loadImage(imageSrc);
  const [w, h] = answer.image_size ?? [img.naturalWidth, img.naturalHeight];
  // Small images are enlarged (up to 2x) so the boxes and labels stay legible.
  const scale = Math.min(2, 720 / img.naturalWidth, 540 / img.naturalHeight);
  const canvas = el("canvas", { class: "grounding", width: Math.round(img.naturalWidth * scale),
                               height: Math.round(img.naturalHeight * scale) });
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const sx = canvas.width / w;
  const sy = canvas.height / h;
  ctx.lineWidth = 3;
  ctx.font = "bold 14px sans-serif";
  ctx.textBaseline = "top";
  for (const obj of answer.objects ?? []) {
    const [x1, y1, x2, y2] = obj.box;
    const bx = x1 * sx, by = y1 * sy, bw = Math.max(2, (x2 - x1) * sx), bh = Math.max(2, (y2 - y1) * sy);
    ctx.strokeStyle = BOX_COLOR;
    ctx.strokeRect(bx, by, bw, bh);
    const label = String(obj.label ?? "").slice(0, 64);
    const tw = Math.min(ctx.measureText(label).width + 8, canvas.width);
    const lx = Math.max(0, Math.min(bx, canvas.width - tw)); // keep the label inside the picture
    const ly = by >= 18 ? by - 18 : by;
    ctx.fillStyle = BOX_COLOR;
    ctx.fillRect(lx, ly, tw, 18);
    ctx.fillStyle = "#ffffff";
    ctx.fillText(label, lx + 4, ly + 2, tw - 8);
  }
  container.append(canvas);
  return canvas;
}

// chart_parse: {title, chart_type, x_axis{label,unit}, y_axis{label,unit}, series[{name, points[{x,y}]}]}
export function chartTable(answer) {
  const series = answer.series ?? [];
  const xs = [];
  for (const s of series) for (const p of s.points ?? []) if (!xs.includes(p.x)) xs.push(p.x);
  const table = el("table", { class: "chart-table" });
  const head = el("tr", {}, el("th", { text: answer.x_axis?.label || "x" }));
  for (const s of series) head.append(el("th", { text: s.name || "" }));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  for (const x of xs) {
    const row = el("tr", {}, el("th", { text: x }));
    for (const s of series) {
      const point = (s.points ?? []).find((p) => p.x === x);
      row.append(el("td", { text: point ? String(point.y) : "" }));
    }
    body.append(row);
  }
  table.append(body);
  return table;
}

export function plotChart(answer, width = 640, height = 360) {
  const canvas = el("canvas", { class: "chart", width, height });
  const ctx = canvas.getContext("2d");
  const series = answer.series ?? [];
  const xs = [];
  for (const s of series) for (const p of s.points ?? []) if (!xs.includes(p.x)) xs.push(p.x);
  const ys = series.flatMap((s) => (s.points ?? []).map((p) => Number(p.y))).filter(Number.isFinite);
  let lo = Math.min(0, ...ys), hi = Math.max(0, ...ys);
  if (hi === lo) hi = lo + 1;
  const pad = { l: 64, r: 16, t: 36, b: 56 };
  const pw = width - pad.l - pad.r, ph = height - pad.t - pad.b;
  const X = (i) => pad.l + (xs.length <= 1 ? pw / 2 : (i + 0.5) * (pw / xs.length));
  const Y = (v) => pad.t + ph - ((v - lo) / (hi - lo)) * ph;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  ctx.fillStyle = "#222";
  ctx.font = "bold 15px sans-serif";
  ctx.textAlign = "center";
  ctx.fillText(String(answer.title ?? "").slice(0, 80), width / 2, 20);
  // axes and y ticks
  ctx.strokeStyle = "#888";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(pad.l, pad.t);
  ctx.lineTo(pad.l, pad.t + ph);
  ctx.lineTo(pad.l + pw, pad.t + ph);
  ctx.stroke();
  ctx.font = "11px sans-serif";
  ctx.textAlign = "right";
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    ctx.fillText(Number(v.toPrecision(3)).toString(), pad.l - 6, Y(v) + 4);
    ctx.strokeStyle = "#eee";
    ctx.beginPath();
    ctx.moveTo(pad.l, Y(v));
    ctx.lineTo(pad.l + pw, Y(v));
    ctx.stroke();
  }
  ctx.textAlign = "center";
  ctx.fillStyle = "#222";
  xs.forEach((x, i) => ctx.fillText(String(x).slice(0, 12), X(i), pad.t + ph + 16));
  const unit = (axis) => (axis?.unit ? ` (${axis.unit})` : "");
  ctx.fillText(String(answer.x_axis?.label ?? "") + unit(answer.x_axis), pad.l + pw / 2, height - 8);
  ctx.save();
  ctx.translate(14, pad.t + ph / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(String(answer.y_axis?.label ?? "") + unit(answer.y_axis), 0, 0);
  ctx.restore();
  const bars = ["bar", "pie", "table", "other"].includes(answer.chart_type);
  const slot = pw / Math.max(1, xs.length);
  const barW = (slot * 0.8) / Math.max(1, series.length);
  series.forEach((s, k) => {
    const colour = PALETTE[k % PALETTE.length];
    ctx.fillStyle = colour;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    const pts = (s.points ?? []).map((p) => [xs.indexOf(p.x), Number(p.y)]).filter(([, y]) => Number.isFinite(y));
    if (bars) {
      for (const [i, y] of pts) {
        const left = pad.l + i * slot + slot * 0.1 + k * barW;
        ctx.fillRect(left, Math.min(Y(y), Y(0)), Math.max(1, barW - 2), Math.abs(Y(0) - Y(y)));
      }
    } else {
      if (answer.chart_type !== "scatter") {
        ctx.beginPath();
        pts.forEach(([i, y], j) => (j ? ctx.lineTo(X(i), Y(y)) : ctx.moveTo(X(i), Y(y))));
        ctx.stroke();
      }
      for (const [i, y] of pts) {
        ctx.beginPath();
        ctx.arc(X(i), Y(y), 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    // legend
    ctx.fillRect(pad.l + 8 + k * 110, pad.t - 14, 10, 10);
    ctx.fillStyle = "#222";
    ctx.textAlign = "left";
    ctx.fillText(String(s.name ?? "").slice(0, 14), pad.l + 22 + k * 110, pad.t - 5);
    ctx.textAlign = "center";
  });
  return canvas;
}

// Timestamps the way Qwen3-VL writes them: "<12.5 seconds>", "12.5s", "12 seconds", "01:02", "1:02:03".
const STAMP = /<(\d+(?:\.\d+)?) seconds>|\b(\d+(?:\.\d+)?)\s?(?:s|sec|secs|seconds|秒)\b|\b(?:(\d{1,2}):)?(\d{1,2}):(\d{2})\b/g;

export function findTimestamps(text) {
  const found = [];
  for (const m of String(text).matchAll(STAMP)) {
    let seconds;
    if (m[1] !== undefined) seconds = Number(m[1]);
    else if (m[2] !== undefined) seconds = Number(m[2]);
    else seconds = Number(m[3] ?? 0) * 3600 + Number(m[4]) * 60 + Number(m[5]);
    if (Number.isFinite(seconds)) found.push({ index: m.index, length: m[0].length, text: m[0], seconds });
  }
  return found;
}

// The answer as text nodes with each timestamp turned into a button that seeks `video`.
export function timestampedAnswer(text, video) {
  const box = el("div", { class: "timestamped" });
  let pos = 0;
  for (const stamp of findTimestamps(text)) {
    box.append(document.createTextNode(text.slice(pos, stamp.index)));
    const button = el("button", { type: "button", class: "timestamp", title: `${t("timestamps")} ${stamp.seconds}s`,
                                  text: stamp.text });
    button.addEventListener("click", () => {
      video.currentTime = stamp.seconds;
      video.play().catch(() => {});
    });
    box.append(button);
    pos = stamp.index + stamp.length;
  }
  box.append(document.createTextNode(text.slice(pos)));
  return box;
}
