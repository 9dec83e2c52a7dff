// "Run a job": a dialog that sends one benchmark job per selected device (POST /api/jobs).
//
// The model is named by content (sha256 and file name): devices fetch it from this collector's
// /models/{sha256}, which `edgemeter models add FILE --db URL` fills. When the server lists its
// models (GET /api/models) the dialog offers them; otherwise the two fields are typed in.
// Starting a job always needs the collector's bearer token unless the server says otherwise: the
// dialog asks for it only after a 401/403 and keeps it for this tab.

import { getJSON, postJSON, getToken, setToken, ApiError } from "./api.js";
import { h, bytes } from "./dom.js";

async function knownModels() {
  try {
    // ask the server's OpenAPI schema first, so an older server never answers a 404 here
    const schema = await getJSON("/openapi.json");
    if (!schema.paths || !schema.paths["/api/models"]) return null;
    const body = await getJSON("/api/models");
    return Array.isArray(body.models) ? body.models : [];
  } catch {
    return null; // no listing on this server: type the model in
  }
}

function intOrNull(input) {
  const v = input.value.trim();
  return v === "" ? null : Number(v);
}

/** Open the dialog for these device ids; `onStarted(jobs)` runs after the server accepted them. */
export async function openJobDialog(deviceIds, onStarted = () => {}) {
  const models = await knownModels();
  const status = h("p", { class: "small", role: "status" });
  const tokenRow = h("label", { hidden: true }, "Bearer token (the collector's [http] token)",
    h("input", { name: "token", type: "password", autocomplete: "off" }));
  let modelFields;
  if (models && models.length) {
    modelFields = h("label", {}, "Model (stored in this collector)",
      h("select", { name: "model", required: true },
        models.map((m) => h("option", { value: `${m.sha256}|${m.name}` },
          `${m.name} (${bytes(m.size_bytes)}, ${m.sha256.slice(0, 10)}…)`))));
  } else {
    modelFields = h("div", { class: "fields" },
      h("label", {}, "Model file name (.onnx or .tflite)",
        h("input", { name: "model_name", required: true, placeholder: "mobilenet_v2.onnx",
          pattern: "[A-Za-z0-9._\\-]+\\.(onnx|tflite)" })),
      h("label", {}, "Model sha256 (from `edgemeter models add FILE --db URL`)",
        h("input", { name: "model_sha256", required: true, pattern: "[0-9a-fA-F]{64}",
          placeholder: "64 hex digits", class: "mono" })),
      models === null ? null : h("p", { class: "small muted" },
        "No models stored yet: add one with `edgemeter models add FILE --db URL`."));
  }
  const form = h("form", { method: "dialog" },
    h("h2", {}, `Run a benchmark on ${deviceIds.length} device${deviceIds.length === 1 ? "" : "s"}`),
    h("p", { class: "small muted" }, deviceIds.join(", ")),
    modelFields,
    h("div", { class: "row2" },
      h("label", {}, "Profile",
        h("select", { name: "profile" }, h("option", { value: "quick" }, "quick (seconds)"),
          h("option", { value: "standard" }, "standard"), h("option", { value: "mlperf" }, "mlperf (long)"))),
      h("label", {}, "Scenario",
        h("select", { name: "scenario" }, ["single-stream", "multi-stream", "offline", "server"]
          .map((s) => h("option", { value: s }, s))))),
    h("div", { class: "row2" },
      h("label", {}, "Iterations (empty: the profile's)", h("input", { name: "iterations", type: "number", min: 1 })),
      h("label", {}, "Duration in s (empty: the profile's)", h("input", { name: "duration_s", type: "number", min: 1, max: 3600 }))),
    h("div", { class: "row2" },
      h("label", {}, "Threads (empty: the runtime's)", h("input", { name: "threads", type: "number", min: 1, max: 256 }))),
    tokenRow, status,
    h("div", { class: "actions" },
      h("button", { type: "button", value: "cancel", onclick: () => dialog.close() }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, "Start")));
  const dialog = h("dialog", { "aria-label": "Run a benchmark job" }, form);
  document.body.append(dialog);
  dialog.addEventListener("close", () => dialog.remove());

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    let sha256, name;
    if (f.model) [sha256, name] = f.model.value.split("|");
    else { sha256 = f.model_sha256.value.trim().toLowerCase(); name = f.model_name.value.trim(); }
    const settings = { profile: f.profile.value, scenario: f.scenario.value };
    const iterations = intOrNull(f.iterations);
    const threads = intOrNull(f.threads);
    if (iterations) settings.iterations = iterations;
    if (threads) settings.threads = threads;
    const durationS = intOrNull(f.duration_s);
    if (durationS) settings.duration_s = durationS;
    if (!tokenRow.hidden && f.token.value.trim()) setToken(f.token.value.trim());
    status.textContent = "Sending…";
    status.className = "small";
    try {
      const body = await postJSON("/api/jobs", { devices: deviceIds, model: { sha256, name }, settings });
      const skipped = body.skipped ?? [];
      status.textContent = `Sent job ${body.job_ids.join(", ")}.`
        + skipped.map((s) => ` Skipped ${s.device_id}: ${s.reason}.`).join("");
      onStarted(body.jobs ?? []);
      if (!skipped.length) dialog.close();  // else leave the skipped devices' reasons on screen
    } catch (err) {
      if (err instanceof ApiError && err.needsToken) {
        tokenRow.hidden = false;
        status.textContent = getToken() ? "That token was refused: check the collector's [http] token."
          : "Starting jobs needs the collector's bearer token: enter it and press Start again.";
        setToken(null);
      } else {
        status.textContent = `Not sent: ${err.message}`;
      }
      status.className = "small error";
    }
  });
  dialog.showModal();
  return dialog;
}
