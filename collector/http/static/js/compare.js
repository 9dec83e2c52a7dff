// Compare page: one model's edge runs against datacenter and HPC runs and cited (MLPerf) figures,
// from /api/compare (the same engine as `edgemeter compare`): the newest run of each hardware
// group (hardware_key, else the device) per model file and scenario, on both sides. Four bar
// charts, each saying its unit and whether lower or higher is better, then the pairwise rows.

import { getJSON, query } from "./api.js";
import { h, clear, empty, ms, joules, usd, num, sig, shortId } from "./dom.js";
import { failure, setParams } from "./nav.js";

const KIND_NAME = { edge: "edge", datacenter: "datacenter", hpc: "HPC", cited: "cited (MLPerf)", measured: "measured" };

const METRICS = [
  { key: "latency_p50_ms", title: "p50 latency", unit: "ms", fmt: ms },
  { key: "throughput_sps", title: "Throughput", unit: "samples/s", fmt: (v) => (v == null ? "–" : `${num(v, 1)} samples/s`) },
  { key: "joules_per_inference", title: "Energy per inference", unit: "joules; mJ = 1/1000 J", fmt: joules },
  { key: "cost_per_million_usd", title: "Cost per million inferences", unit: "USD", fmt: usd },
];

/** Every distinct run or citation in the rows, edge runs first, each with its kind. */
function sides(rows, roles) {
  const out = new Map();
  for (const r of rows) {
    if (!out.has(r.edge_run_id)) {
      out.set(r.edge_run_id, { label: `${r.edge_device_id}`, kind: "edge", metrics: r.edge_metrics, run: r.edge_run_id });
    }
  }
  for (const r of rows) {
    const b = r.baseline;
    const key = b.run_id ?? b.baseline_id ?? `${b.source}|${b.label}`;
    if (out.has(key)) continue;
    const kind = b.kind === "cited" ? "cited" : roles.get(b.run_id) ?? "measured";
    out.set(key, { label: b.label, kind, metrics: r.baseline_metrics, run: b.run_id, source: b.source });
  }
  return [...out.values()];
}

function barChart(metric, list, better) {
  const values = list.map((s) => s.metrics?.[metric.key] ?? null);
  const max = Math.max(0, ...values.filter((v) => v !== null));
  const hint = better === "lower" ? "lower is better" : better === "higher" ? "higher is better" : "";
  return h("section", { class: "panel bars", "data-metric": metric.key },
    h("div", { class: "axis-title" }, `${metric.title} (${metric.unit}) `, h("span", { class: "hint" }, `· ${hint}`)),
    list.map((s, i) => {
      const v = values[i];
      const width = v === null || max === 0 ? 0 : Math.max(1, (v / max) * 100);
      return h("div", { class: "row" },
        h("span", { class: "label", title: `${s.label} (${KIND_NAME[s.kind] ?? s.kind})` },
          s.run ? h("a", { href: `#/run/${s.run}` }, s.label) : short(s.label),
          h("span", { class: "small muted" }, ` · ${KIND_NAME[s.kind] ?? s.kind}`)),
        h("span", { class: "track" },
          h("span", { class: `fill kind-${s.kind === "measured" ? "datacenter" : s.kind}`, style: `width: ${width}%` }),
          valueLabel(metric, s, v)));
    }));
}

function valueLabel(metric, side, v) {
  if (v !== null) return h("span", { class: "val" }, metric.fmt(v));
  const why = metric.key === "cost_per_million_usd" ? side.metrics?.cost_reason : null;
  return h("span", { class: "val muted", title: why ?? "" }, why ? `not known: ${why}` : "not known");
}

/** "STMicroelectronics NUCLEO-L4R5ZI-P (STM32L4R5, ...)" -> the part before the details. */
function short(label) { return label.length > 42 ? `${label.split(" (")[0].slice(0, 42)}…` : label; }

function ratio(v, better) {
  if (v === null || v === undefined) return "–";
  return h("span", { title: `edge ÷ baseline = ${v}; ${better} is better` }, `${sig(v, 3)}×`);
}

/** Which share of a catalogue machine a side was charged (a run on a slice of it), or nothing. */
function shareNote(side) {
  if (!side || !side.share_note) return null;
  return h("div", { class: "small muted", title: side.share_note },
    `${side.label}: ${sig(side.hardware_share * 100, 2)} % of ${side.hardware_key} charged`);
}

/** A header: its name, and under it in small print which way is better. */
function head(name, hint, title) {
  return h("th", { class: "num", title }, name, h("br"), h("span", { class: "small muted" }, hint));
}

function rowsTable(rows, better) {
  return h("table", { class: "cards pairs" },
    h("thead", {}, h("tr", {}, h("th", {}, "Edge run"), h("th", {}, "Baseline"), h("th", {}, "Matched by"),
      head("p50 ×", "lower is better", "p50 latency, edge ÷ baseline"),
      head("Throughput ×", "higher is better", "throughput, edge ÷ baseline"),
      head("J/inference ×", "lower is better", "energy per inference, edge ÷ baseline"),
      head("USD per million", "edge / baseline", "cost per million inferences: edge owned, then the baseline owned (or rented)"),
      h("th", {}, "Break-even"))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", { "data-label": "Edge run" }, h("a", { href: `#/run/${r.edge_run_id}` }, `${r.edge_device_id} · ${shortId(r.edge_run_id)}`)),
      h("td", { "data-label": "Baseline" }, r.baseline.run_id ? h("a", { href: `#/run/${r.baseline.run_id}` }, r.baseline.label)
        : h("span", { title: `${r.baseline.label}\n${r.baseline.source ?? ""}` }, `${short(r.baseline.label)} (cited)`)),
      h("td", { "data-label": "Matched by", class: "small" }, r.match === "sha256" ? "same model file (sha256)" : r.match === "network" ? "same network" : String(r.match ?? "–")),
      h("td", { "data-label": "p50 ratio", class: "num" }, ratio(r.ratios.latency_p50, better["ratios.latency_p50"])),
      h("td", { "data-label": "Throughput ratio", class: "num" }, ratio(r.ratios.throughput, better["ratios.throughput"])),
      h("td", { "data-label": "Energy ratio", class: "num" }, ratio(r.ratios.joules_per_inference, better["ratios.joules_per_inference"])),
      h("td", { "data-label": "USD per million", class: "num" }, usd(r.cost_per_million_usd.edge), h("br"),
        h("span", { class: "small muted" }, `vs ${usd(r.cost_per_million_usd.baseline ?? r.cost_per_million_usd.baseline_cloud)}`),
        shareNote(r.edge_metrics), shareNote(r.baseline_metrics)),
      h("td", { "data-label": "Break-even", class: "small" }, r.break_even.inferences != null
        ? `${num(r.break_even.inferences, 0)} inferences${r.break_even.days != null ? ` (${num(r.break_even.days, 1)} days)` : ""}`
        : r.break_even.reason ?? "–")))));
}

export async function render(root, { params }, ctx) {
  let model = params.get("model") ?? "";
  let role = params.get("role") ?? "";
  const models = h("datalist", { id: "compare-models" });
  const modelIn = h("input", { list: "compare-models", value: model, placeholder: "model file or network",
    "aria-label": "model", size: 28 });
  const roleSel = h("select", { "aria-label": "baselines" },
    [["", "all baselines"], ["datacenter", "datacenter runs"], ["hpc", "HPC runs"], ["cited", "cited (MLPerf)"]]
      .map(([v, t]) => h("option", { value: v, selected: v === role }, t)));
  const body = h("div");
  root.append(h("h1", {}, "Compare"),
    h("p", { class: "sub" }, "One model's newest run on each edge hardware kind against the newest datacenter and HPC run "
      + "of each hardware kind and cited (MLPerf) results. Ratios are edge ÷ baseline."),
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); model = modelIn.value.trim(); role = roleSel.value; load(); } },
      h("label", {}, "Model", modelIn), models, h("label", {}, "Baselines", roleSel),
      h("button", { class: "primary", type: "submit" }, "Compare")),
    body);

  let recent = [];
  try {
    recent = (await getJSON("/api/runs?limit=200", { signal: ctx.signal })).runs;
  } catch (err) {
    if (err.name === "AbortError") return;
    body.append(failure("the list of runs", err));
    return;
  }
  const names = [...new Set(recent.map((r) => r.model_name))];
  models.append(...names.map((n) => h("option", { value: n })));
  if (!model && names.length) { model = names[0]; modelIn.value = model; }

  async function load() {
    setParams("/compare", { model, role });
    clear(body);
    if (!model) {
      body.append(empty("No runs yet, so nothing to compare: run ", h("code", {}, "edgemeter bench MODEL --publish URL"),
        " on an edge board, and the same model with ", h("code", {}, "--role datacenter"), " on a server."));
      return;
    }
    let data;
    try {
      data = await getJSON(`/api/compare${query({ model, role })}`, { signal: ctx.signal });
    } catch (err) {
      if (err.name === "AbortError") return;
      body.append(failure(`the comparison for ${model}`, err));
      return;
    }
    const roles = new Map(Object.entries(data.roles ?? {}));
    if (!data.rows.length) {
      body.append(empty(`Nothing to compare for ${model} yet. A comparison needs an edge run of it and a baseline with `
        + "the same scenario: a run with ", h("code", {}, `edgemeter bench ${model} --role datacenter --publish URL`),
      " (or --role hpc), or cited figures imported with ", h("code", {}, "edgemeter baselines import FILE"), "."));
      return;
    }
    const list = sides(data.rows, roles);
    const kinds = [...new Set(list.map((s) => s.kind))];
    body.append(
      h("p", { class: "small" }, "Legend:", kinds.map((k) => h("span", {},
        h("span", { class: `legend-swatch kind-${k === "measured" ? "datacenter" : k}` }), KIND_NAME[k] ?? k))),
      h("div", { class: "grid two" }, METRICS.map((m) => barChart(m, list, data.better?.[m.key]))),
      h("section", { class: "panel scroll" }, h("h2", {}, `Pairs (${data.rows.length})`), rowsTable(data.rows, data.better ?? {})));
    const notes = [...new Set(data.rows.flatMap((r) => r.notes ?? []))];
    if (notes.length) {
      body.append(h("section", { class: "panel" }, h("details", {}, h("summary", {}, `Notes on these figures (${notes.length})`),
        h("ul", { class: "small" }, notes.map((n) => h("li", {}, n))))));
    }
  }
  await load();
}
