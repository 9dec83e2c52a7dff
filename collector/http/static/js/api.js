// Talking to the collector: JSON reads, the bearer token, and the live event stream.
//
// The token (the collector's [http] token) is asked for only when the server answers 401/403, and
// kept in this tab's sessionStorage. The live stream is read with fetch() rather than EventSource
// so that it can carry the same Authorization header when the server is bound off loopback.

const TOKEN_KEY = "edgemeter.token";

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
  get needsToken() { return this.status === 401 || this.status === 403; }
}

export function getToken() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

/** Path relative to the page, so the dashboard also works behind a path prefix. */
function url(path) { return path.replace(/^\//, ""); }

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const detail = body.detail ?? body.error ?? body.message;
    if (detail) message = typeof detail === "string" ? detail : JSON.stringify(detail);
  } catch { /* not JSON: keep the status line */ }
  return new ApiError(response.status, message);
}

export async function getJSON(path, { signal } = {}) {
  let response;
  try {
    // no-store: a live page must never be answered from the browser cache
    response = await fetch(url(path), { headers: headers({ Accept: "application/json" }), signal, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "the collector did not answer (is `edgemeter collector serve --http` running?)");
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function postJSON(path, body) {
  let response;
  try {
    response = await fetch(url(path), {
      method: "POST", body: JSON.stringify(body),
      headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
    });
  } catch {
    throw new ApiError(0, "the collector did not answer");
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** Query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ---------------------------------------------------------------------------- live events

/** Every live event from /api/events, re-dispatched as a DOM event named after its kind. */
export const live = new EventTarget();
let connected = false;
export function isLive() { return connected; }

function setConnected(value) {
  if (connected === value) return;
  connected = value;
  live.dispatchEvent(new CustomEvent("connection", { detail: { connected } }));
}

function dispatch(block) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // heartbeat comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") kind = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  let detail;
  try { detail = JSON.parse(data.join("\n")); } catch { return; }
  live.dispatchEvent(new CustomEvent(kind, { detail }));
}

/** Keep one stream open for the life of the page; reconnect with a growing pause. */
export async function startLive() {
  let pauseMs = 500;
  for (;;) {
    try {
      const response = await fetch(url("/api/events"), { headers: headers({ Accept: "text/event-stream" }) });
      if (!response.ok || !response.body) throw new ApiError(response.status, "no stream");
      setConnected(true);
      pauseMs = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch { /* reconnect below */ }
    setConnected(false);
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
    pauseMs = Math.min(pauseMs * 2, 15000);
  }
}
