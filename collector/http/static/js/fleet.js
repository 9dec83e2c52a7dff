// Fleet page: every device with presence, board, runtime, job progress and its latest result.
//
// Filtering, sorting and paging happen on the server (/api/devices: q, status, fleet, sort, limit,
// cursor), so a fleet of thousands costs one page of rows. Live events patch the visible rows in
// place; a device this page has not drawn yet (or a presence change, which can move rows between
// filters) triggers one reload, at most every RELOAD_MS. There is no polling.

import { getJSON, query } from "./api.js";
import { h, clear, empty, ago, ms, watts, badge, num, debounce } from "./dom.js";
import { setParams, failure } from "./nav.js";
import { openJobDialog } from "./jobs.js";

const PAGE_SIZE = 50;
const RELOAD_MS = 1000;
const COLUMNS = [
  { key: "device_id", label: "Device" },
  { key: "status", label: "Status" },
  { key: "last_seen", label: "Last seen" },
  { key: "board", label: "Board" },
  { key: "runtime", label: "Runtime" },
  { key: null, label: "Current job" },
  { key: "latest_p50_ms", label: "Latest p50 (ms)", num: true },
  { key: "latest_power_w", label: "Power (W)", num: true },
  { key: null, label: "Latest model" },
  { key: "spool_depth", label: "Spool (results)", num: true, title: "results waiting on the device for the collector's receipt" },
  { key: null, label: "p99, last hour", title: "the highest p99 of the device's monitor windows, per two minutes" },
];
const TRENDS_MS = 30000; // a page's sparklines are fetched again at most this often

export function progressCell(device) {
  const p = device.progress;
  if (!p) {
    if (device.current_job) return h("span", { class: "mono" }, device.current_job);
    return h("span", { class: "muted" }, device.status === "online" ? "idle" : "–");
  }
  const parts = [`${p.phase}`, `${num(p.iterations_done, 0)} queries`];
  if (p.running_p50_ms !== null && p.running_p50_ms !== undefined) parts.push(`p50 ${ms(p.running_p50_ms)}`);
  if (p.power_w !== null && p.power_w !== undefined) parts.push(watts(p.power_w));
  return h("div", { class: "progress", title: `job ${p.job_id}` },
    h("span", { class: "small" }, parts.join(" · ")),
    h("div", { class: "bar indeterminate" }, h("span")));
}

/** A device's p99 over the last hour as a small line, and a "regressed" badge when it is. */
export function trendCell(trend) {
  const values = (trend?.p99_ms ?? []).map((v, i) => [i, v]).filter(([, v]) => v !== null);
  if (!values.length) return h("span", { class: "muted small" }, "no monitor");
  const max = Math.max(...values.map(([, v]) => v)) || 1;
  const n = trend.p99_ms.length - 1 || 1;
  const points = values.map(([i, v]) => `${(i / n * 80).toFixed(1)},${(18 - v / max * 16).toFixed(1)}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 80 20");
  svg.setAttribute("width", "80");
  svg.setAttribute("height", "20");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `p99 up to ${ms(max)} over the last hour`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", values.length > 1 ? "polyline" : "circle");
  if (values.length > 1) {
    line.setAttribute("points", points);
    line.setAttribute("fill", "none");
  } else {
    const [x, y] = points.split(",");
    line.setAttribute("cx", x); line.setAttribute("cy", y); line.setAttribute("r", "2");
  }
  line.setAttribute("stroke", trend.regressed ? "#dc2626" : "#2563eb");
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return h("span", { class: "nowrap", title: `recent p99 ${ms(trend.recent_p99_ms)}, 24 h mean ${ms(trend.baseline_p99_ms)}` },
    svg, trend.regressed ? h("span", {}, " ", badge("regressed", "failed")) : null);
}

export async function render(root, { params }, ctx) {
  const state = {
    q: params.get("q") ?? "", status: params.get("status") ?? "", fleet: params.get("fleet") ?? "",
    sort: params.get("sort") ?? "device_id", regressed: params.get("regressed") === "true",
    cursors: [null], page: 0,
  };
  const selected = new Set();
  const rows = new Map(); // device_id -> { tr, device }

  const summary = h("p", { class: "sub" }, "Loading…");
  const search = h("input", { type: "search", placeholder: "id, board, runtime, model…", value: state.q,
    "aria-label": "search devices" });
  const statusSel = h("select", { "aria-label": "status" },
    [["", "any"], ["online", "online"], ["offline", "offline"]].map(([v, t]) =>
      h("option", { value: v, selected: v === state.status }, t)));
  const fleetIn = h("input", { placeholder: "all fleets", value: state.fleet, size: 10, "aria-label": "fleet" });
  const regressedBox = h("input", { type: "checkbox", "aria-label": "regressed only",
    checked: state.regressed, onchange: () => readFilters() });
  let trends = { at: 0, key: "", devices: {} };
  const runBtn = h("button", { class: "primary", disabled: true, onclick: () =>
    openJobDialog([...selected], () => reload()) }, "Run a job on selected (0)");
  const errors = h("div");
  const tbody = h("tbody");
  const head = h("tr", {}, h("th", {}, h("input", { type: "checkbox", "aria-label": "select all on this page",
    onchange: (e) => { for (const id of rows.keys()) toggle(id, e.target.checked); } })),
    COLUMNS.map((c) => h("th", { class: c.num ? "num" : null, title: c.title },
      c.key ? h("button", { class: "sort", onclick: () => sortBy(c.key) }, c.label, sortMark(c.key)) : c.label)));
  const table = h("table", { class: "cards", id: "fleet-table" }, h("thead", {}, head), tbody);
  const pager = h("div", { class: "pager" });
  const listPanel = h("div", { class: "panel scroll" }, table, pager);

  root.append(h("h1", {}, "Fleet"), summary,
    h("div", { class: "toolbar" },
      h("label", {}, "Search", search), h("label", {}, "Status", statusSel),
      h("label", {}, "Fleet", fleetIn),
      h("label", { title: "devices whose monitor p99 of the last 10 minutes is over 1.25 times its mean of the 24 hours before (every device, asked of the server)" },
        "Regressed only", regressedBox), runBtn),
    errors, listPanel);

  function sortMark(key) {
    if (state.sort === key) return " ▲";
    if (state.sort === `-${key}`) return " ▼";
    return "";
  }
  function sortBy(key) {
    state.sort = state.sort === key ? `-${key}` : key;
    for (const btn of head.querySelectorAll("button.sort")) {
      const col = COLUMNS.find((c) => btn.textContent.startsWith(c.label));
      btn.textContent = col.label + sortMark(col.key);
    }
    firstPage();
  }
  function toggle(id, on) {
    if (on) selected.add(id); else selected.delete(id);
    const row = rows.get(id);
    if (row) row.tr.querySelector("input[type=checkbox]").checked = on;
    runBtn.disabled = selected.size === 0;
    runBtn.textContent = `Run a job on selected (${selected.size})`;
  }

  function cells(d) {
    return [
      h("td", { "data-label": "Select" }, h("input", { type: "checkbox", checked: selected.has(d.device_id),
        "aria-label": `select ${d.device_id}`, onchange: (e) => toggle(d.device_id, e.target.checked) })),
      h("td", { "data-label": "Device", class: "nowrap" }, h("a", { href: `#/device/${encodeURIComponent(d.device_id)}` }, d.device_id),
        d.fleet && d.fleet !== "default" ? h("div", { class: "small muted" }, `fleet ${d.fleet}`) : null),
      h("td", { "data-label": "Status" }, badge(d.status ?? "unknown")),
      h("td", { "data-label": "Last seen", class: "seen nowrap" }, ago(d.last_seen)),
      h("td", { "data-label": "Board" }, d.board ?? h("span", { class: "muted" }, "unknown")),
      h("td", { "data-label": "Runtime", class: "small" }, d.runtime || h("span", { class: "muted" }, "–")),
      h("td", { "data-label": "Current job", class: "job" }, progressCell(d)),
      h("td", { "data-label": "Latest p50 (ms)", class: "num p50" }, ms(d.latest_p50_ms)),
      h("td", { "data-label": "Power (W)", class: "num watts" }, watts(d.latest_power_w)),
      h("td", { "data-label": "Latest model", class: "small model" }, d.latest_run_id
        ? h("a", { href: `#/run/${d.latest_run_id}` }, d.latest_model ?? "run") : h("span", { class: "muted" }, "no runs yet")),
      h("td", { "data-label": "Spool (results)", class: "num" }, d.spool_depth ?? "–"),
      h("td", { "data-label": "p99, last hour", class: "trend" }, trendCell(trends.devices[d.device_id])),
    ];
  }
  async function loadTrends(force = false) {
    const ids = [...rows.keys()];
    const key = ids.join(",");
    if (!ids.length || (!force && key === trends.key && Date.now() - trends.at < TRENDS_MS)) return;
    try {
      const body = await getJSON(`/api/fleet/trends${query({ devices: key })}`, { signal: ctx.signal });
      trends = { at: Date.now(), key, devices: body.devices };
    } catch (err) {
      if (err.name !== "AbortError") console.warn("trends failed", err);
      return;
    }
    for (const [id, { tr }] of rows) tr.querySelector(".trend")?.replaceChildren(trendCell(trends.devices[id]));
  }
  function draw(device) {
    const existing = rows.get(device.device_id);
    const tr = h("tr", { "data-device": device.device_id }, cells(device));
    if (existing) existing.tr.replaceWith(tr); else tbody.append(tr);
    rows.set(device.device_id, { tr, device });
  }

  let lastLoad = 0;
  async function load() {
    lastLoad = Date.now();
    const cursor = state.cursors[state.page];
    setParams("/fleet", { q: state.q, status: state.status, fleet: state.fleet,
      sort: state.sort === "device_id" ? "" : state.sort, regressed: state.regressed ? "true" : "" });
    let body, online;
    try {
      [body, online] = await Promise.all([
        getJSON(`/api/devices${query({ q: state.q, status: state.status, fleet: state.fleet,
          sort: state.sort, regressed: state.regressed ? "true" : "", limit: PAGE_SIZE, cursor })}`,
        { signal: ctx.signal }),
        getJSON(`/api/devices${query({ status: "online", fleet: state.fleet, limit: 1 })}`, { signal: ctx.signal }),
      ]);
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(errors).append(failure("the fleet", err));
      summary.textContent = "";
      return;
    }
    clear(errors);
    clear(tbody);
    rows.clear();
    for (const d of body.devices) draw(d);
    loadTrends();
    for (const [id, left] of awaited) {
      if (rows.has(id) || left <= 1 || body.devices.length >= PAGE_SIZE) awaited.delete(id);
      else awaited.set(id, left - 1);
    }
    if (awaited.size) reload();
    const filtered = state.q || state.status || state.fleet || state.regressed;
    summary.textContent = `${num(body.total, 0)} device${body.total === 1 ? "" : "s"}${filtered ? " match" : ""} · `
      + `${num(online.total, 0)} online${state.fleet ? ` in fleet ${state.fleet}` : ""}. `
      + "Live: presence, job progress and results update as they arrive.";
    listPanel.hidden = false;
    clear(pager);
    if (body.devices.length === 0) {
      listPanel.hidden = true;
      errors.append(filtered ? empty("No device matches these filters. ",
        h("button", { onclick: () => { search.value = ""; statusSel.value = ""; fleetIn.value = ""; regressedBox.checked = false; readFilters(); } }, "Clear filters"))
        : empty("No devices yet. Start an agent on a board with ", h("code", {}, "edgemeter agent run --config agent.toml"),
          ", or publish one result with ", h("code", {}, "edgemeter bench MODEL --publish URL"), "."));
      return;
    }
    const first = state.page * PAGE_SIZE + 1;
    pager.append(
      h("button", { disabled: state.page === 0, onclick: () => { state.page--; load(); } }, "← Previous"),
      h("span", { class: "small muted" }, `${num(first, 0)}–${num(first + body.devices.length - 1, 0)} of ${num(body.total, 0)}`),
      h("button", { disabled: !body.next_cursor, onclick: () => {
        state.cursors[state.page + 1] = body.next_cursor; state.page++; load(); } }, "Next →"));
  }
  function firstPage() { state.cursors = [null]; state.page = 0; load(); }
  function readFilters() {
    state.q = search.value.trim(); state.status = statusSel.value; state.fleet = fleetIn.value.trim();
    state.regressed = regressedBox.checked;
    firstPage();
  }
  // At most one reload per RELOAD_MS, and never starved: a steady stream of events still reloads
  // once per period (a debounce would wait for the stream to pause).
  // The server may answer from a list it read up to a second ago (its device cache), so a device
  // announced by an event but missing from the answer is asked for again, a few times.
  let pending = null;
  const awaited = new Map(); // device_id -> reloads left
  function reload(deviceId = null) {
    if (deviceId && !awaited.has(deviceId)) awaited.set(deviceId, 3);
    if (pending) return;
    const waitMs = Math.max(0, lastLoad + RELOAD_MS - Date.now());
    pending = setTimeout(() => { pending = null; load(); }, waitMs);
  }
  ctx.onLeave(() => clearTimeout(pending));

  search.addEventListener("input", debounce(readFilters, 300));
  statusSel.addEventListener("change", readFilters);
  fleetIn.addEventListener("change", readFilters);

  // live: patch what is drawn, reload for what is not
  // Progress, acks and telemetry of devices on other pages are ignored; a status or result from a
  // device not drawn may be a new device, so those reload (throttled).
  function patch(id, change, { newcomer = false, fleet = null } = {}) {
    if (state.fleet && fleet && fleet !== state.fleet) return;
    const row = rows.get(id);
    if (!row) { if (newcomer) reload(id); return; }
    draw({ ...row.device, ...change(row.device) });
  }
  ctx.on("progress", (p) => patch(p.device_id, () => ({ progress: p, current_job: p.job_id, last_seen: p.sent_at })));
  ctx.on("ack", (a) => patch(a.device_id, (d) => (["done", "failed", "cancelled", "rejected"].includes(a.state)
    && (!d.progress || d.progress.job_id === a.job_id) ? { progress: null, current_job: null } : {})));
  ctx.on("telemetry", (t) => patch(t.device_id, () => ({ last_seen: t.sent_at, spool_depth: t.spool_depth })));
  ctx.on("status", (s) => {
    patch(s.device_id, () => ({ status: s.status, last_seen: s.sent_at ?? new Date().toISOString() }), { newcomer: true, fleet: s.fleet });
    if (state.status && (!state.fleet || s.fleet === state.fleet)) reload(); // it may have left (or joined) this filter
  });
  ctx.on("result", (r) => patch(r.device_id, () => ({
    latest_p50_ms: r.p50_ms, latest_power_w: r.watts ?? null, latest_model: r.model,
    latest_run_id: r.run_id, last_seen: new Date().toISOString() }), { newcomer: true, fleet: r.fleet }));
  ctx.every(5000, () => {
    for (const { tr, device } of rows.values()) tr.querySelector(".seen").replaceChildren(ago(device.last_seen));
  });
  // the sparklines cover the last hour, and a device announced before the page opened reaches it
  // through no event: the list and its trends are read again every TRENDS_MS
  ctx.every(TRENDS_MS, () => reload());

  await load();
}
