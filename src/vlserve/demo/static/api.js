// The task API as the page uses it: JSON calls, the SSE stream of /infer_stream, typed errors.

export class ApiError extends Error {
  constructor(code, msg, { status = 0, requestId = "", retryAfter = null } = {}) {
    super(msg);
    this.code = code;
    this.status = status;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

export class Api {
  constructor(base) {
    this.base = base; // "api/" behind `vlserve demo`, "../" when served at /ui by the server itself
    this.key = "";
  }

  url(path) {
    return new URL(this.base + path.replace(/^\//, ""), document.baseURI).href;
  }

  headers(json = false) {
    const h = {};
    if (json) h["content-type"] = "application/json";
    if (this.key) h.authorization = `Bearer ${this.key}`;
    return h;
  }

  // Artefact links in answers are server paths ("/artifacts/req_…/model.glb").
  artifactUrl(path) {
    return this.url(path);
  }

  async call(method, path, body, signal) {
    const init = { method, headers: this.headers(body !== undefined), signal };
    if (body !== undefined) init.body = JSON.stringify(body);
    const response = await fetch(this.url(path), init);
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  // Yields {type: "token", token, index} for each token, then {type: "final", ...}.
  async *stream(body, signal) {
    const response = await fetch(this.url("infer_stream"), {
      method: "POST", headers: this.headers(true), body: JSON.stringify(body), signal,
    });
    if (!response.ok) throw await errorOf(response);
    yield* events(response);
  }

  // A job as the server streams it (GET /jobs/{id}/events): {type: "progress", id, status, progress},
  // then {type: "final", ...the job as GET /jobs/{id} answers it}.
  async *jobEvents(id, signal) {
    const response = await fetch(this.url(`jobs/${encodeURIComponent(id)}/events`), { headers: this.headers(), signal });
    if (!response.ok) throw await errorOf(response);
    yield* events(response);
  }
}

// Server-Sent Events of a response as {type: name, ...data}; an `error` event is thrown as an ApiError.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (!data.length) continue; // keep-alive comments carry no data
      const payload = JSON.parse(data.join("\n"));
      if (name === "error") throw new ApiError(payload.code, payload.msg, { requestId: payload.request_id });
      yield { type: name, ...payload };
    }
  }
}

async function errorOf(response) {
  const retry = response.headers.get("retry-after");
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const code = body?.code ?? body?.error?.code ?? (response.status === 404 ? 4040 : 5000);
  const msg = body?.msg ?? body?.error?.message ?? response.statusText;
  return new ApiError(Number(code), String(msg ?? ""), {
    status: response.status, requestId: body?.request_id ?? response.headers.get("x-request-id") ?? "",
    retryAfter: retry === null ? null : Number(retry),
  });
}
