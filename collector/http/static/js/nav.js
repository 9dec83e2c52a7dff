// What pages share besides data: the page's query in the hash, and how a failed load looks.

import { ApiError, setToken } from "./api.js";
import { h, errorBox } from "./dom.js";

/** Draw the current page again (after a token was entered, say). */
export function redraw() { window.dispatchEvent(new HashChangeEvent("hashchange")); }

/** Change the query of the current hash without drawing the page again. */
export function setParams(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  history.replaceState(null, "", `#${path}${s ? `?${s}` : ""}`);
}

/** An error box for a failed load; asks for the bearer token when the server wants one. */
export function failure(what, err) {
  if (err instanceof ApiError && err.needsToken) {
    const input = h("input", { type: "password", placeholder: "bearer token", "aria-label": "bearer token" });
    return errorBox(`Could not load ${what}: this collector needs its bearer token (the [http] token in its settings). `,
      input, " ", h("button", { onclick: () => { setToken(input.value.trim()); redraw(); } }, "Use token"));
  }
  if (err instanceof ApiError && err.status === 404) return errorBox(`Not found: ${err.message}`);
  return errorBox(`Could not load ${what}: ${err.message}`);
}
