// Run page: one stored result explained: latency histogram and CDF, power trace with the measured
// window and idle baseline shaded, energy per inference and where it came from, compute against
// the catalogue's peak, the validity verdict and the settings it ran with.

import { getJSON } from "./api.js";
import { h, empty, when, ms, watts, joules, badge, kv, num, bytes, shortId } from "./dom.js";
import { failure } from "./nav.js";
import { lineChart, histogram, shadeHooks } from "./charts.js";

function chartPanel(title, hint, id, draw, ctx) {
  const el = h("div", { class: "chart", id });
  const panel = h("section", { class: "panel" },
    h("h2", {}, title, " ", h("span", { class: "small muted" }, hint)), el);
  requestAnimationFrame(() => { const c = draw(el); if (c) ctx.onLeave(() => c.destroy()); });
  return { panel, el };
}

function latencyPanels(detail, ctx) {
  const hist = detail.histogram;
  const cdf = detail.cdf;
  if (!hist || !cdf) {
    return [h("section", { class: "panel" }, h("h2", {}, "Latency distribution"),
      empty("This result carries no raw latencies (only its summary), so there is no histogram or CDF."))];
  }
  // a long tail (one query 100x the median) would squash a linear axis: go logarithmic past 10x
  const lo = hist.edges_ms[0];
  const hi = hist.edges_ms[hist.edges_ms.length - 1];
  const xLog = lo > 0 && hi / lo > 10;
  const xLabel = `latency per query (ms${xLog ? ", log scale" : ""})`;
  const histPanel = chartPanel("Latency histogram", "queries per latency bin; log-spaced bins", "latency-histogram",
    (el) => histogram(el, { edges: hist.edges_ms, counts: hist.counts, xLabel, yLabel: "queries", xLog }), ctx);
  const cdfPanel = chartPanel("Latency CDF", "share of queries at or below each latency; further left is better", "latency-cdf",
    (el) => lineChart(el, { xLabel, xLog, yLabel: "queries at or below (%)", legend: false,
      series: [{ label: "queries at or below (%)" }],
      data: [cdf.latency_ms, cdf.fraction.map((f) => f * 100)] }), ctx);
  return [histPanel.panel, cdfPanel.panel];
}

function powerPanel(result, detail, ctx) {
  const e = result.energy;
  const p = detail.power ?? {};
  const title = h("h2", {}, "Power and energy");
  if (!e) {
    return h("section", { class: "panel" }, title, empty("No power figures for this run. Measure with ",
      h("code", {}, "edgemeter bench MODEL --power SOURCE"), " (", h("code", {}, "edgemeter power"), " lists the sources this board has)."));
  }
  const figures = kv([
    ["Energy per inference", h("strong", {}, joules(e.joules_per_inference))],
    ["Measured or estimated", e.estimated ? badge("estimated") : badge("measured", "valid")],
    ["Source", e.source],
    ["Scope (what the watts cover)", e.scope],
    ["Average power (measured window)", watts(e.avg_power_w)],
    ["Peak power", e.peak_power_w === null ? null : `${watts(e.peak_power_w)}${e.peak_window_ms ? ` over ${num(e.peak_window_ms, 0)} ms` : ""}`],
    ["Idle baseline", watts(e.idle_power_w)],
    ["Energy above idle per inference", joules(e.dynamic_joules_per_inference)],
    ["Inferences per joule", num(e.inferences_per_joule, 1)],
    ["Energy in the window", joules(e.energy_j)],
    ["Window", e.window_s === null ? null : `${num(e.window_s, 2)} s`],
    ["Samples", `${e.samples}${e.sample_hz ? ` at ${num(e.sample_hz, 1)} Hz` : ""}${e.coverage !== null && e.coverage !== undefined ? `, ${num(e.coverage * 100, 1)} % of the window covered` : ""}`],
    ["Rails", e.rails?.length ? e.rails.map((r) => `${r.name} ${watts(r.avg_power_w)}`).join(", ") : undefined],
    ["Energy figures valid", e.valid ? "yes" : h("span", {}, badge("invalid"), " ", (e.reasons ?? []).join("; "))],
  ]);
  const notes = e.notes?.length ? h("ul", { class: "small muted reasons" }, e.notes.map((n) => h("li", {}, n))) : null;
  let chart = empty("No power trace in this result (the source gave totals only).");
  if (p.trace && p.trace.t_s.length) {
    const el = h("div", { class: "chart", id: "power-trace" });
    requestAnimationFrame(() => {
      const c = lineChart(el, { xLabel: "time since the timed phase began (s)", yLabel: "power (W)", legend: false,
        series: [{ label: "power (W)", stroke: "#dc2626" }], data: [p.trace.t_s, p.trace.power_w],
        hooks: shadeHooks({ xRange: p.window, yBaseline: p.idle_power_w }) });
      ctx.onLeave(() => c.destroy());
    });
    chart = h("div", {}, el, h("p", { class: "chart-note" },
      h("span", { class: "legend-swatch", style: "background: rgba(37,99,235,.25)" }), "measured window",
      p.window ? ` (${num(p.window[0], 2)}–${num(p.window[1], 2)} s)` : " (unknown)",
      h("span", { class: "legend-swatch", style: "background: rgba(107,114,128,.35)" }), "idle baseline",
      p.idle_power_w !== null && p.idle_power_w !== undefined ? ` (${watts(p.idle_power_w)})` : " (not measured)"));
  }
  return h("section", { class: "panel" }, title, h("div", { class: "grid" }, h("div", {}, figures, notes), chart));
}

function computePanel(result, catalogue) {
  const macs = result.model.macs;
  const achieved = result.gmacs_per_s;
  const peak = catalogue?.peak_gmacs_per_s ?? null;
  const share = achieved !== null && achieved !== undefined && peak ? achieved / peak : null;
  return h("section", { class: "panel" }, h("h2", {}, "Compute"),
    kv([
      ["MACs per sample", macs === null || macs === undefined ? "unknown (not counted for this model)" : `${num(macs / 1e6, 2)} M`],
      ["Achieved", achieved === null || achieved === undefined ? null : `${num(achieved, 2)} GMAC/s`],
      ["Catalogue peak", peak === null ? (catalogue ? "not listed for this precision"
        : `no catalogue entry for this device${result.device.hardware_key ? ` (${result.device.hardware_key})` : " (hardware_key unknown)"}`)
        : `${num(peak, 1)} GMAC/s (${catalogue.name ?? catalogue.hardware_key}, ${result.model.precision})`],
      ["Share of peak", share === null ? null : `${num(share * 100, 2)} %`],
      ["Memory bandwidth (catalogue)", catalogue?.memory_gbps ? `${num(catalogue.memory_gbps, 1)} GB/s` : null],
      ["Parameters", paramsText(result.model.params)],
      ["Model size", bytes(result.model.size_bytes)],
    ]));
}

/** The stability verdict beside validity: stable or unstable with the windows' CV. */
function stabilityText(st) {
  if (!st || st.throughput_cv === null || st.throughput_cv === undefined) return "not judged (too few queries)";
  const cv = `throughput CV ${num(st.throughput_cv * 100, 1)} % over ${st.windows?.length ?? 0} windows`;
  if (st.stable === null || st.stable === undefined) return `not judged (${cv}; server arrivals or a run under 5 s)`;
  return `${st.stable ? "stable" : "unstable"} (${cv}, limit ${num((st.cv_limit ?? 0.1) * 100, 0)} %)`;
}

function validityPanel(result) {
  const v = result.validity;
  const bound = v.latency_bound;
  const qps = v.server_qps;
  return h("section", { class: "panel" }, h("h2", {}, "Validity"),
    h("p", {}, v.valid ? badge("valid") : badge("invalid"),
      v.custom ? h("span", {}, " ", badge("custom", "warn"), " ", h("span", { class: "small" }, v.custom)) : null,
      v.mlperf_valid === true ? h("span", {}, " ", badge("MLPerf-valid", "valid"))
        : v.mlperf_valid === false ? h("span", { class: "small muted" }, " not MLPerf-valid") : null),
    v.reasons?.length ? h("ul", { class: "reasons" }, v.reasons.map((r) => h("li", {}, r)))
      : h("p", { class: "small muted" }, v.custom ? "No reasons against it by LoadGen's rules; shorter than its profile."
        : "No reasons against it: the run met its profile's rules."),
    v.warnings?.length ? h("ul", { class: "warnings" }, v.warnings.map((w) => h("li", {}, `warning: ${w}`))) : null,
    kv([["Stability", stabilityText(result.stability)]]),
    qps ? kv([["Server rate", `target ${num(qps.target_qps, 1)}/s, scheduled ${num(qps.scheduled_qps, 1)}/s, `
      + `completed ${num(qps.completed_qps, 1)}/s`]]) : null,
    bound ? kv([["Latency bound", `${ms(bound.bound_ms)} at p${num(bound.percentile * 100, 1)}`],
      ["Queries over the bound", `${bound.over_bound} of ${bound.queries}`],
      ["Early-stopping estimate", ms(bound.early_stop_ms)], ["Passed", bound.passed ? "yes" : "no"]]) : null);
}

const SETTING_KEYS = ["scenario", "profile", "backend", "threads", "batch", "streams", "samples_per_query",
  "iterations", "duration_s", "warmup", "min_queries", "target_qps", "latency_bound_ms", "providers",
  "delegate", "power", "power_hz", "idle_s", "fidelity", "inputs", "seed"];

function show(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(4)));
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function settingsPanel(result) {
  const { requested, effective } = result.spec;
  return h("section", { class: "panel scroll" }, h("h2", {}, "Settings ", h("span", { class: "small muted" },
    "what was asked for and what the run actually used (bold where they differ)")),
  h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Setting"), h("th", {}, "Requested"), h("th", {}, "Effective"))),
    h("tbody", {}, SETTING_KEYS.filter((k) => requested[k] != null || effective[k] != null).map((k) => {
      const differs = show(requested[k]) !== show(effective[k]);
      return h("tr", {}, h("td", {}, k), h("td", { class: "mono" }, show(requested[k])),
        h("td", { class: "mono" }, differs ? h("strong", {}, show(effective[k])) : show(effective[k])));
    }))));
}

/** 5.3 M, or the count itself under a million (a 21,432-parameter model is not "0.02 M"). */
function paramsText(params) {
  if (params === null || params === undefined) return null;
  return params >= 1e6 ? `${num(params / 1e6, 2)} M` : num(params, 0);
}

export async function render(root, { id }, ctx) {
  let detail;
  try {
    detail = await getJSON(`/api/runs/${encodeURIComponent(id)}`, { signal: ctx.signal });
  } catch (err) {
    if (err.name === "AbortError") return;
    root.append(h("h1", {}, `Run ${shortId(id)}`), failure(`run ${id}`, err),
      h("p", {}, h("a", { href: "#/fleet" }, "← Back to the fleet")));
    return;
  }
  const r = detail.result;
  const l = r.latency_ms;
  root.append(
    h("p", { class: "small" }, h("a", { href: `#/device/${encodeURIComponent(r.device_id)}` }, `← Device ${r.device_id}`)),
    h("h1", {}, `${r.model.name} on ${r.device_id} `, r.validity.valid ? badge("valid") : badge("invalid")),
    h("p", { class: "sub" }, `Run ${r.run_id} · ${when(r.created_at)} · ${r.role} · ${r.spec.effective.scenario} · `
      + `${r.runtime.name} ${r.runtime.version} · ${r.model.precision} ${r.model.format}`
      + `${r.device.board ? ` · ${r.device.board}` : ""} · `,
    h("a", { href: `#/compare?model=${encodeURIComponent(r.model.name)}` }, "compare this model")),
    h("section", { class: "panel" }, h("h2", {}, "Latency and throughput ", h("span", { class: "small muted" }, "per query; lower latency and higher throughput are better")),
      kv([["p50", h("strong", {}, ms(l.p50))], ["p90", ms(l.p90)], ["p99", ms(l.p99)], ["p99.9", ms(l.p999)],
        ["mean ± std", `${ms(l.mean)} ± ${ms(l.std)}`], ["min / max", `${ms(l.min)} / ${ms(l.max)}`],
        ["Queries", num(l.count, 0)], ["Throughput", `${num(r.throughput_sps, 2)} samples/s`],
        ["Model load", ms(r.init_ms)], ["First inference", ms(r.first_inference_ms)]])),
    h("div", { class: "grid" }, ...latencyPanels(detail, ctx)),
    powerPanel(r, detail, ctx),
    h("div", { class: "grid" }, computePanel(r, detail.catalogue), validityPanel(r)),
    settingsPanel(r));
}
