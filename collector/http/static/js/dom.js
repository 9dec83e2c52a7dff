// Small DOM and formatting helpers shared by every page. Units are always printed with numbers.

/** Build an element: h("a", {href: "#/x", class: "y"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) { el.replaceChildren(); return el; }

/** A dashed box that tells a person why there is nothing and what to do about it. */
export function empty(...children) { return h("div", { class: "empty" }, ...children); }

export function errorBox(message, ...more) { return h("div", { class: "error", role: "alert" }, message, ...more); }

const DASH = "–";

export function num(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(2);
  return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** A number to ``digits`` significant digits (a ratio of 0.0037 stays 0.0037, never "0"). */
export function sig(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-4)) return value.toExponential(digits - 1);
  return value.toLocaleString("en-US", { maximumSignificantDigits: digits });
}

/** Value with its unit, or a dash when unmeasured (null is never shown as 0). */
export function withUnit(value, unit, digits = 2) {
  return value === null || value === undefined ? DASH : `${num(value, digits)} ${unit}`;
}

export const ms = (v) => withUnit(v, "ms", v !== null && v !== undefined && v < 10 ? 3 : 1);
export const watts = (v) => withUnit(v, "W", 2);
export const joules = (v) => (v === null || v === undefined ? DASH
  : v < 1 ? `${num(v * 1000, 3)} mJ` : `${num(v, 3)} J`);
export const usd = (v) => (v === null || v === undefined ? DASH : `$${num(v, v < 1 ? 4 : 2)}`);

export function bytes(v) {
  if (v === null || v === undefined) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${num(v, 1)} ${units[i]}`;
}

export function parseTime(t) { return t ? new Date(t) : null; }

/** "12 s ago", "3 min ago", ... with the exact UTC time as a tooltip. */
export function ago(t, now = Date.now()) {
  const d = parseTime(t);
  if (!d || Number.isNaN(d.getTime())) return h("span", { class: "muted" }, "never");
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  const text = s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago`
    : s < 86400 ? `${Math.floor(s / 3600)} h ago` : `${Math.floor(s / 86400)} d ago`;
  return h("time", { datetime: d.toISOString(), title: d.toISOString().replace(".000", "") }, text);
}

export function when(t) {
  const d = parseTime(t);
  return d ? d.toISOString().slice(0, 19).replace("T", " ") + " UTC" : DASH;
}

export function badge(text, kind = text) { return h("span", { class: `badge ${kind}` }, text); }

export function kv(pairs) {
  const dl = h("dl", { class: "kv" });
  for (const [key, value] of pairs) {
    if (value === undefined) continue;
    dl.append(h("dt", {}, key), append(h("dd"), [value === null ? DASH : value]));
  }
  return dl;
}

export function shortId(id) { return id ? String(id).slice(0, 8) : DASH; }

export function debounce(fn, waitMs) {
  let timer = null;
  const wrapped = () => { clearTimeout(timer); timer = setTimeout(fn, waitMs); };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
