// Device page: live latency and power while a job runs, the device's telemetry, its runs, the
// jobs sent to it and the gaps in its result sequence numbers.

import { getJSON } from "./api.js";
import { h, clear, empty, ago, when, ms, watts, joules, badge, kv, bytes, num, shortId, debounce } from "./dom.js";
import { failure } from "./nav.js";
import { lineChart } from "./charts.js";
import { openJobDialog } from "./jobs.js";
import { progressCell } from "./fleet.js";
import { historyPanels } from "./history.js";

const LIVE_POINTS = 600; // about ten minutes of progress at one event a second

export function runsTable(runs, { showDevice = false } = {}) {
  return h("table", { class: "cards" },
    h("thead", {}, h("tr", {}, showDevice ? h("th", {}, "Device") : null, h("th", {}, "When"), h("th", {}, "Model"),
      h("th", {}, "Scenario"), h("th", { class: "num" }, "p50 (ms)"), h("th", { class: "num" }, "p99 (ms)"),
      h("th", { class: "num" }, "Throughput (samples/s)"), h("th", { class: "num" }, "Energy / inference"),
      h("th", { class: "num" }, "Power (W)"), h("th", {}, "Valid"))),
    h("tbody", {}, runs.map((r) => h("tr", {},
      showDevice ? h("td", { "data-label": "Device" }, r.device_id) : null,
      h("td", { "data-label": "When" }, h("a", { href: `#/run/${r.run_id}`, title: `run ${r.run_id}` }, when(r.created_at))),
      h("td", { "data-label": "Model" }, r.model_name, r.role && r.role !== "edge" ? h("span", { class: "small muted" }, ` (${r.role})`) : null),
      h("td", { "data-label": "Scenario" }, r.scenario ?? "–"),
      h("td", { "data-label": "p50 (ms)", class: "num" }, ms(r.p50_ms)),
      h("td", { "data-label": "p99 (ms)", class: "num" }, ms(r.p99_ms)),
      h("td", { "data-label": "Throughput", class: "num" }, num(r.throughput_sps, 1)),
      h("td", { "data-label": "Energy / inference", class: "num" }, joules(r.joules_per_inference),
        r.energy_estimated ? h("span", { class: "small muted", title: "estimated, not measured" }, " est.") : null),
      h("td", { "data-label": "Power (W)", class: "num" }, watts(r.avg_power_w)),
      h("td", { "data-label": "Valid" }, r.valid === false ? badge("invalid") : r.valid ? badge("valid") : "–")))));
}

function telemetryPanel(t) {
  if (!t) {
    return empty("No telemetry yet. The agent daemon (", h("code", {}, "edgemeter agent run"),
      ") sends it every few seconds; a device that only publishes results with ",
      h("code", {}, "edgemeter bench --publish"), " has none.");
  }
  const temps = Object.entries(t.temps_c ?? {}).map(([k, v]) => `${k} ${num(v, 1)} °C`).join(", ");
  return kv([
    ["Sent", h("span", {}, ago(t.sent_at), h("span", { class: "small muted" }, ` (${when(t.sent_at)})`))],
    ["Uptime", t.uptime_s === undefined ? null : t.uptime_s < 3600 ? `${num(t.uptime_s / 60, 0)} min`
      : `${num(t.uptime_s / 3600, 1)} h`],
    ["CPU busy", t.cpu_util_pct === null ? null : `${num(t.cpu_util_pct, 1)} %`],
    ["Memory", t.memory_used_bytes === null ? null : `${bytes(t.memory_used_bytes)} of ${bytes(t.memory_total_bytes)}`],
    ["Temperatures", temps || null],
    ["Throttled", t.throttled === null ? null : t.throttled ? `yes: ${(t.throttle_reasons ?? []).join(", ")}` : "no"],
    ["Power", t.power_w === null ? null
      : `${watts(t.power_w)} (${t.power_source ?? "unknown source"}${t.power_estimated ? ", estimated" : ", measured"})`],
    ["Current job", t.current_job ?? "none"],
    ["Jobs queued", t.jobs_queued],
    ["Spool", `${t.spool_depth} result(s) waiting for a receipt, ${t.spool_dropped_total} dropped by the size cap`],
  ]);
}

function jobsTable(jobs) {
  if (!jobs.length) return empty("No jobs sent to this device yet: use “Run a job on this device” above.");
  return h("table", { class: "cards" },
    h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "State"), h("th", {}, "Model"),
      h("th", {}, "Sent"), h("th", {}, "Updated"), h("th", {}, "Result / reason"))),
    h("tbody", {}, jobs.map((j) => h("tr", {},
      h("td", { "data-label": "Job", class: "mono" }, j.job_id),
      h("td", { "data-label": "State" }, badge(j.state ?? "sent", j.state ?? "")),
      h("td", { "data-label": "Model" }, j.model_name ?? j.model?.name ?? "–"),
      h("td", { "data-label": "Sent" }, when(j.created_at ?? j.sent_at)),
      h("td", { "data-label": "Updated" }, j.updated_at ? ago(j.updated_at) : "–"),
      h("td", { "data-label": "Result / reason" }, j.run_id ? h("a", { href: `#/run/${j.run_id}` }, `run ${shortId(j.run_id)}`)
        : j.reason ?? "–")))));
}

function gapsPanel(gaps) {
  const intro = h("p", { class: "small muted" }, "Each device numbers its results (seq). A gap is a range of results this collector never "
    + "received: still waiting in the device's spool, or lost.");
  if (!gaps.length) return h("div", {}, intro, empty("No gaps: every result up to the newest has arrived."));
  return h("div", {}, intro, h("ul", {}, gaps.map((g) => h("li", {},
    g.first_missing === g.last_missing ? `seq ${g.first_missing} missing`
      : `seq ${g.first_missing}–${g.last_missing} missing (${g.last_missing - g.first_missing + 1} results)`))));
}

export async function render(root, { id }, ctx) {
  let device;
  try {
    device = await getJSON(`/api/devices/${encodeURIComponent(id)}`, { signal: ctx.signal });
  } catch (err) {
    if (err.name === "AbortError") return;
    root.append(h("h1", {}, `Device ${id}`), failure(`device ${id}`, err),
      h("p", {}, h("a", { href: "#/fleet" }, "← Back to the fleet")));
    return;
  }
  const statusEl = h("span");
  const seenEl = h("span");
  const head = h("p", { class: "sub" });
  const telemetryBody = h("div");
  const runsBody = h("div");
  const jobsBody = h("div");
  const gapsBody = h("div");
  const liveText = h("div");
  const latencyEl = h("div", { class: "chart", id: "live-latency" });
  const powerEl = h("div", { class: "chart", id: "live-power" });
  const powerNote = empty("No power readings in this job's progress: the device reports power while a job runs "
    + "only when it has a power source that can be sampled (the estimate is computed at the end).");
  const liveCharts = h("div", { class: "grid", hidden: true },
    h("div", {}, h("div", { class: "axis-title" }, "Running p50 latency (ms) ", h("span", { class: "hint" }, "lower is better")), latencyEl),
    h("div", {}, h("div", { class: "axis-title" }, "Power (W) ", h("span", { class: "hint" }, "as the device reports it")), powerEl, powerNote));

  root.append(
    h("p", { class: "small" }, h("a", { href: "#/fleet" }, "← Fleet")),
    h("h1", {}, `Device ${device.device_id} `, statusEl),
    head,
    h("div", { class: "toolbar" }, h("button", { class: "primary", onclick: () => openJobDialog([device.device_id], () => refresh()) },
      "Run a job on this device"),
    h("a", { href: `#/compare?model=${encodeURIComponent(device.latest_model ?? "")}`, hidden: !device.latest_model }, "Compare its latest model")),
    h("section", { class: "panel" }, h("h2", {}, "Live job"), liveText, liveCharts),
    historyPanels(device.device_id, ctx),
    h("div", { class: "grid" },
      h("section", { class: "panel" }, h("h2", {}, "Telemetry (latest)"), telemetryBody),
      h("section", { class: "panel" }, h("h2", {}, "Result sequence gaps"), gapsBody)),
    h("section", { class: "panel scroll" }, h("h2", {}, "Runs (newest 50)"), runsBody),
    h("section", { class: "panel scroll" }, h("h2", {}, "Jobs (newest 20)"), jobsBody));

  // The live ack can come before the store has written it: a job's newest ack seen here wins
  // over an older state read back from the API.
  const acks = new Map();
  const ORDER = { accepted: 1, running: 2, done: 3, failed: 3, cancelled: 3, rejected: 3 };
  function withAck(job) {
    const ack = acks.get(job.job_id);
    if (!ack || (ORDER[job.state] ?? 0) >= ORDER[ack.state]) return job;
    return { ...job, state: ack.state, reason: ack.reason ?? job.reason, run_id: ack.run_id ?? job.run_id, updated_at: ack.sent_at };
  }
  function drawDevice(d) {
    statusEl.replaceChildren(badge(d.status ?? "unknown"));
    head.replaceChildren(`fleet ${d.fleet} · board ${d.board ?? "unknown"} · runtime ${d.runtime || "unknown"} · last seen `,
      seenEl, ` · birth/death seq ${d.bd_seq ?? "–"}`);
    seenEl.replaceChildren(ago(d.last_seen));
    clear(telemetryBody).append(telemetryPanel(d.telemetry));
    clear(runsBody).append(d.runs.length ? runsTable(d.runs)
      : empty("No runs yet: run ", h("code", {}, `edgemeter bench MODEL --publish URL --device-id ${d.device_id}`),
        " on the device, or start a job with the button above."));
    clear(jobsBody).append(jobsTable((d.jobs ?? []).map(withAck)));
    clear(gapsBody).append(gapsPanel(d.gaps ?? []));
  }
  drawDevice(device);

  // live charts from progress events
  let job = null;
  let charts = null;
  const series = { t: [], p50: [], w: [] };
  function showIdle() {
    liveText.replaceChildren(device.progress ? progressCell(device)
      : empty("No job running. Live latency and power charts appear here while a job runs."));
  }
  showIdle();
  function onProgress(p) {
    if (p.job_id !== job) {
      job = p.job_id;
      series.t.length = series.p50.length = series.w.length = 0;
    }
    const t0 = series.t.length ? series.start : Date.parse(p.sent_at) || Date.now();
    series.start = t0;
    series.t.push(((Date.parse(p.sent_at) || Date.now()) - t0) / 1000);
    series.p50.push(p.running_p50_ms ?? null);
    series.w.push(p.power_w ?? null);
    for (const k of ["t", "p50", "w"]) if (series[k].length > LIVE_POINTS) series[k].shift();
    liveText.replaceChildren(h("p", {}, `Job ${p.job_id} is running: `, progressCell({ progress: p })));
    liveCharts.hidden = false;
    const noPower = series.w.every((w) => w === null);
    powerEl.hidden = noPower;
    powerNote.hidden = !noPower;
    if (!charts) {
      charts = {
        latency: lineChart(latencyEl, { xLabel: "seconds since the job's first progress (s)", yLabel: "p50 (ms)",
          series: [{ label: "running p50 (ms)", points: true }], data: [series.t, series.p50], height: 200, legend: false }),
        power: lineChart(powerEl, { xLabel: "seconds since the job's first progress (s)", yLabel: "power (W)",
          series: [{ label: "power (W)", stroke: "#dc2626", points: true }], data: [series.t, series.w], height: 200, legend: false }),
      };
      ctx.onLeave(() => { charts.latency.destroy(); charts.power.destroy(); });
    } else {
      charts.latency.setData([series.t, series.p50]);
      charts.power.setData([series.t, series.w]);
    }
  }

  async function refresh() {
    try {
      device = await getJSON(`/api/devices/${encodeURIComponent(id)}`, { signal: ctx.signal });
      drawDevice(device);
    } catch (err) {
      if (err.name !== "AbortError") console.warn("device refresh failed", err);
    }
  }
  const refreshSoon = debounce(refresh, 500);
  ctx.onLeave(() => refreshSoon.cancel());
  const mine = (m) => m.device_id === device.device_id;
  ctx.on("progress", (p) => { if (mine(p)) onProgress(p); });
  ctx.on("telemetry", (t) => { if (mine(t)) { device.telemetry = t; device.last_seen = t.sent_at; drawDevice(device); } });
  ctx.on("status", (s) => { if (mine(s)) refreshSoon(); });
  ctx.on("result", (r) => { if (mine(r)) refreshSoon(); });
  ctx.on("ack", (a) => {
    if (!mine(a)) return;
    acks.set(a.job_id, a);
    if (["done", "failed", "cancelled", "rejected"].includes(a.state)) {
      liveText.replaceChildren(h("p", {}, `Job ${a.job_id} finished: ${a.state}`, a.reason ? ` (${a.reason})` : "",
        a.run_id ? h("span", {}, " · ", h("a", { href: `#/run/${a.run_id}` }, "its run")) : null));
    }
    refreshSoon();
  });
  ctx.every(5000, () => seenEl.replaceChildren(ago(device.last_seen)));
}
