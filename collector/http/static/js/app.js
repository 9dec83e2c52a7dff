// The dashboard's entry point: a hash router over four pages and the live-stream indicator.
//
//   #/fleet?q=&status=&fleet=&sort=   every device, live
//   #/device/ID                       one device: live charts, runs, telemetry, jobs, seq gaps
//   #/run/RUN_ID                      one run: latency, power, energy, compute, validity, settings
//   #/compare?model=NAME              edge vs datacenter vs HPC vs cited for one model

import { live, startLive, isLive } from "./api.js";
import { h, clear } from "./dom.js";
import { failure } from "./nav.js";
import * as fleet from "./fleet.js";
import * as device from "./device.js";
import * as run from "./run.js";
import * as compare from "./compare.js";

const routes = [
  { pattern: /^\/fleet$/, page: fleet, nav: "fleet" },
  { pattern: /^\/device\/(.+)$/, page: device, nav: "fleet" },
  { pattern: /^\/run\/(.+)$/, page: run, nav: "fleet" },
  { pattern: /^\/compare$/, page: compare, nav: "compare" },
];

let current = null; // { abort: AbortController, cleanups: [] }

/** What a page gets: where to draw, its parameters, and hooks that end when the page is left. */
function context(abort, cleanups) {
  return {
    signal: abort.signal,
    on(kind, fn) {
      const listener = (event) => fn(event.detail);
      live.addEventListener(kind, listener);
      cleanups.push(() => live.removeEventListener(kind, listener));
    },
    every(ms, fn) { const id = setInterval(fn, ms); cleanups.push(() => clearInterval(id)); },
    onLeave(fn) { cleanups.push(fn); },
  };
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/fleet";
  const [path, search = ""] = raw.split("?");
  return { path: decodeURIComponent(path), params: new URLSearchParams(search) };
}

function route() {
  if (current) { current.abort.abort(); current.cleanups.forEach((fn) => fn()); }
  const { path, params } = parseHash();
  const match = routes.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  const root = clear(document.getElementById("page"));
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", !!match && a.dataset.nav === match.r.nav);
  }
  if (!match) {
    if (path === "/" || path === "") { location.replace("#/fleet"); return; }
    root.append(h("h1", {}, "Page not found"),
      h("p", {}, `Nothing lives at #${path}. `, h("a", { href: "#/fleet" }, "Go to the fleet")));
    return;
  }
  current = { abort: new AbortController(), cleanups: [] };
  const ctx = context(current.abort, current.cleanups);
  Promise.resolve(match.r.page.render(root, { id: match.m[1], params }, ctx)).catch((err) => {
    if (err && err.name === "AbortError") return;
    console.warn("page failed", err);
    root.append(failure("this page", err));
  });
}

function showLive() {
  const el = document.getElementById("live");
  el.classList.toggle("on", isLive());
  el.textContent = isLive() ? "● live" : "○ reconnecting…";
  el.title = isLive() ? "Receiving live updates from the collector" : "Live updates are off; retrying";
}

live.addEventListener("connection", showLive);
window.addEventListener("hashchange", route);
route();
startLive();
