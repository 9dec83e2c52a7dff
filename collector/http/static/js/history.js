// Device page, over time: latency p50/p99 and throughput from monitor windows, power,
// temperature and CPU from telemetry history, over the last hour, day or week; appended live as
// telemetry and monitor windows arrive; and the device's alerts.

import { getJSON } from "./api.js";
import { h, clear, empty, when, num, badge } from "./dom.js";
import { lineChart } from "./charts.js";

const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400 };
const POINTS = 360;

function stepFor(rangeS) {
  const step = Math.max(10, Math.ceil(rangeS / POINTS));
  return step < 60 ? step : Math.ceil(step / 60) * 60;
}

const minutesAgo = (iso, now) => (Date.parse(iso) - now) / 60000;

function alertsTable(alerts) {
  if (!alerts.length) return empty("No alerts for this device. Rules live in the collector's config ([[alerts.rules]]).");
  return h("table", { class: "cards" },
    h("thead", {}, h("tr", {}, h("th", {}, "Alert"), h("th", {}, "State"), h("th", {}, "Condition"),
      h("th", { class: "num" }, "Value"), h("th", {}, "Since"), h("th", {}, "Resolved"))),
    h("tbody", {}, alerts.map((a) => h("tr", {},
      h("td", { "data-label": "Alert" }, a.rule, h("span", { class: "small muted" }, ` (${a.severity})`)),
      h("td", { "data-label": "State" }, badge(a.state, a.state === "firing" ? "failed" : "done")),
      h("td", { "data-label": "Condition", class: "mono" }, `${a.metric} ${a.op} ${num(a.threshold, 2)}`),
      h("td", { "data-label": "Value", class: "num" }, a.value === null ? "–" : num(a.value, 2)),
      h("td", { "data-label": "Since" }, when(a.started_at)),
      h("td", { "data-label": "Resolved" }, a.resolved_at ? when(a.resolved_at) : "–")))));
}

/** The "Over time" and "Alerts" panels of a device page; returns the element to append. */
export function historyPanels(deviceId, ctx) {
  const id = encodeURIComponent(deviceId);
  let range = "1h";
  let charts = null;
  let data = null;
  const buttons = Object.keys(RANGES).map((key) => h("button", {
    class: key === range ? "primary" : "", "data-range": key, onclick: () => { range = key; load(); },
  }, key));
  const note = h("p", { class: "chart-note" });
  const els = {
    latency: h("div", { class: "chart", id: "history-latency" }),
    throughput: h("div", { class: "chart", id: "history-throughput" }),
    power: h("div", { class: "chart", id: "history-power" }),
    heat: h("div", { class: "chart", id: "history-heat" }),
  };
  const alertsBody = h("div");
  const section = h("div", {},
    h("section", { class: "panel" }, h("h2", {}, "Over time"),
      h("div", { class: "toolbar", role: "group", "aria-label": "time range" }, ...buttons), note,
      h("div", { class: "grid two" },
        h("div", {}, h("div", { class: "axis-title" }, "Latency of monitor windows (ms) ", h("span", { class: "hint" }, "lower is better")), els.latency),
        h("div", {}, h("div", { class: "axis-title" }, "Throughput (samples/s) ", h("span", { class: "hint" }, "higher is better")), els.throughput),
        h("div", {}, h("div", { class: "axis-title" }, "Power (W)"), els.power),
        h("div", {}, h("div", { class: "axis-title" }, "Temperature (°C) and CPU (%)"), els.heat))),
    h("section", { class: "panel scroll" }, h("h2", {}, "Alerts"), alertsBody));

  function series() {
    const now = Date.now();
    const w = data.windows;
    const t = data.points.filter((p) => p.messages);  // buckets with nothing measured: no point
    return {
      latency: [w.map((x) => minutesAgo(x.end, now)), w.map((x) => x.latency_ms?.p50 ?? null), w.map((x) => x.latency_ms?.p99 ?? null)],
      throughput: [w.map((x) => minutesAgo(x.end, now)), w.map((x) => x.throughput_sps)],
      power: [t.map((p) => minutesAgo(p.t, now)), t.map((p) => p.power_w)],
      heat: [t.map((p) => minutesAgo(p.t, now)), t.map((p) => p.temperature_c), t.map((p) => p.cpu_util_pct)],
    };
  }

  function draw() {
    const s = series();
    const x = "minutes (0 = now)";
    const xRange = () => [-RANGES[range] / 60, 0];
    const few = (s.latency[0].length + s.power[0].length) < 120;  // sparse: show the points
    note.replaceChildren(`${data.windows.length} monitor window(s), ${data.points.filter((p) => p.messages).length} telemetry point(s) `
      + `over the last ${range}, one point per ${data.step_s} s.`,
      data.windows.length ? "" : " No monitor windows: start one with `edgemeter fleet monitor` or InferenceMonitor in your app.");
    if (!charts) {
      charts = {
        latency: lineChart(els.latency, { xLabel: x, yLabel: "ms", data: s.latency, height: 200, xRange,
          series: [{ label: "p50 (ms)", points: few }, { label: "p99 (ms)", stroke: "#dc2626", points: few }] }),
        throughput: lineChart(els.throughput, { xLabel: x, yLabel: "samples/s", data: s.throughput, height: 200,
          legend: false, xRange, series: [{ label: "throughput (samples/s)", stroke: "#16a34a", points: few }] }),
        power: lineChart(els.power, { xLabel: x, yLabel: "W", data: s.power, height: 200, legend: false, xRange,
          series: [{ label: "power (W)", stroke: "#dc2626", points: few }] }),
        heat: lineChart(els.heat, { xLabel: x, yLabel: "°C / %", data: s.heat, height: 200, xRange,
          series: [{ label: "temperature (°C)", stroke: "#ea580c", points: few },
            { label: "CPU (%)", stroke: "#9333ea", points: few }] }),
      };
      ctx.onLeave(() => Object.values(charts).forEach((c) => c.destroy()));
    } else {
      for (const key of Object.keys(charts)) charts[key].setData(s[key]);
    }
  }

  async function load() {
    buttons.forEach((b) => b.classList.toggle("primary", b.dataset.range === range));
    const rangeS = RANGES[range];
    const step = stepFor(rangeS);
    try {
      const windowStep = rangeS > 3600 ? `&step=${step}` : "";
      const [telemetry, monitor, alerts] = await Promise.all([
        getJSON(`/api/devices/${id}/telemetry?since=${range}&step=${step}`, { signal: ctx.signal }),
        getJSON(`/api/devices/${id}/monitor?since=${range}&histograms=false${windowStep}`, { signal: ctx.signal }),
        getJSON(`/api/alerts?device=${id}&limit=50`, { signal: ctx.signal }),
      ]);
      data = { points: telemetry.points, step_s: telemetry.step_s, windows: monitor.windows };
      draw();
      clear(alertsBody).append(alertsTable(alerts.alerts));
    } catch (err) {
      if (err.name !== "AbortError") note.replaceChildren(`Could not load the history: ${err.message}`);
    }
  }

  const mine = (m) => m.device_id === deviceId;
  ctx.on("monitor", (w) => { if (mine(w) && data) { data.windows.push(w); draw(); } });
  ctx.on("telemetry", (t) => {
    if (!mine(t) || !data) return;
    const temps = Object.values(t.temps_c ?? {});
    data.points.push({ t: t.sent_at, messages: 1, power_w: t.power_w ?? null, cpu_util_pct: t.cpu_util_pct ?? null,
      temperature_c: temps.length ? Math.max(...temps) : null });
    draw();
  });
  ctx.on("alert", (a) => { if (mine(a)) load(); });
  load();
  return section;
}
