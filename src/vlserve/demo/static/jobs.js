// Batch jobs: each submitted job as a row with its status and progress, polled until it ends.

import { ApiError } from "./api.js";
import { t } from "./i18n.js";
import { el } from "./render.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 500;

export class JobList {
  // `onShow(entry)` shows a finished job's result; `onError(err)` reports a failed call.
  constructor(api, list, { onShow, onError }) {
    this.api = api;
    this.list = list;
    this.onShow = onShow;
    this.onError = onError;
    this.entries = new Map();
  }

  // `images`: the data URLs the job's request carries (to draw its result on).
  add(job, images) {
    const status = el("span", { class: "job-status" });
    const bar = el("progress", { max: "1", value: "0" });
    const show = el("button", { type: "button", class: "job-show", hidden: "" });
    const cancel = el("button", { type: "button", class: "job-cancel" });
    const li = el("li", { "data-job": job.id }, el("code", { text: job.id.slice(0, 14), title: job.id }), status, bar,
      el("span", {}, show, cancel));
    this.list.prepend(li);
    const entry = { li, job, images, status, bar, show, cancel };
    this.entries.set(job.id, entry);
    show.addEventListener("click", () => this.onShow(entry));
    cancel.addEventListener("click", async () => {
      try {
        this.update(entry, await this.api.call("DELETE", `jobs/${job.id}`));
      } catch (err) {
        this.onError(err);
      }
    });
    this.update(entry, job);
    this.poll(entry);
  }

  update(entry, job) {
    entry.job = { ...entry.job, ...job };
    const status = entry.job.status;
    entry.li.dataset.status = status;
    entry.status.textContent = t(`status_${status}`);
    entry.show.textContent = t("job_show");
    entry.cancel.textContent = t("job_cancel");
    entry.bar.value = status === "succeeded" ? 1 : Number(entry.job.progress ?? 0);
    entry.show.hidden = !TERMINAL.has(status) || status === "cancelled";
    entry.cancel.hidden = TERMINAL.has(status);
  }

  // The language changed: rewrite every row's words.
  refresh() {
    for (const entry of this.entries.values()) this.update(entry, {});
  }

  async poll(entry) {
    while (!TERMINAL.has(entry.job.status)) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      try {
        this.update(entry, await this.api.call("GET", `jobs/${entry.job.id}`));
      } catch (err) {
        if (!(err instanceof ApiError && err.code === 2001)) { // busy: keep polling
          this.onError(err);
          return;
        }
      }
    }
  }
}
