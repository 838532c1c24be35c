// asyncray's dashboard page: polls /api/snapshot every second while visible
// and redraws. Read-only: it only ever GETs. Elements carry stable ids and
// data-* attributes (tests/test_dashboard.py reads them in a headless browser).
"use strict";

const POLL_MS = 1000;
// No red: red marks failures.
const COLORS = ["#2f6fde", "#e08a1e", "#2aa876", "#9b59b6", "#16a2b8", "#c2a100",
                "#7f8c8d", "#e84393", "#4b6584", "#8e6c3a"];

// ------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 || Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function ms(v) {
  if (v === null || v === undefined) return "";
  if (v < 1) return v.toFixed(2) + " ms";
  if (v < 1000) return v.toFixed(1) + " ms";
  return (v / 1000).toFixed(2) + " s";
}

function amount(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

function colorOf(name) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return COLORS[h % COLORS.length];
}

function replaceBody(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}

// ------------------------------------------------------------ sections

function renderCards(s) {
  const total = s.resources.total, used = s.resources.used, t = s.tasks.totals;
  const cards = [];
  const card = (id, label, value, extra) =>
    cards.push(el("div", { class: "card" + (extra || ""), id: "card-" + id },
      el("div", { class: "label" }, label), el("div", { class: "value", id: id }, value)));
  for (const name of Object.keys(total).sort()) {
    if (name === "object_store_memory" || name.startsWith("node:")) continue;
    if (name !== "CPU" && name !== "GPU" && total[name] === 0) continue;
    const fmt = name === "memory" ? bytes : amount;  // Ray's "memory" resource is in bytes
    card("res-" + name, name + " in use", fmt(used[name] || 0) + " / " + fmt(total[name]));
  }
  card("tasks-running", "running", t.RUNNING || 0);
  card("tasks-finished", "finished", t.FINISHED || 0);
  card("tasks-failed", "failed", t.FAILED || 0, (t.FAILED ? " bad" : ""));
  card("actors-alive", "actors alive", s.actors.states.ALIVE || 0);
  card("objects-count-card", "objects", s.objects.count);
  card("spilled-card", "spilled", bytes(s.objects.spilled_bytes));
  document.getElementById("cards").replaceChildren(...cards);
}

const charts = {};

function lineChart(key, target, xs, series, yFormat, yMin) {
  const names = Object.keys(series);
  const signature = names.join("\u0000");
  const width = Math.max(300, target.clientWidth - 4);
  const data = [xs.map((t) => t / 1000), ...names.map((n) => series[n])];
  let chart = charts[key];
  if (!chart || chart.signature !== signature) {
    if (chart) chart.plot.destroy();
    const opts = {
      width: width,
      height: 180,
      legend: { show: true },
      scales: { x: { time: true },
                y: { range: (u, min, max) => [0, Math.max(chart.yMin, max * 1.1)] } },
      axes: [{}, { size: 76, values: (u, vals) => vals.map(yFormat) }],
      series: [{}, ...names.map((n, i) => ({
        label: n, stroke: COLORS[i % COLORS.length], width: 2,
        fill: COLORS[i % COLORS.length] + "22", value: (u, v) => v == null ? "" : yFormat(v),
      }))],
    };
    target.replaceChildren();
    chart = charts[key] = { plot: null, signature: signature, yMin: yMin };
    chart.plot = new uPlot(opts, data, target);
  } else {
    chart.yMin = yMin;
    chart.plot.setData(data);
    if (Math.abs(chart.plot.width - width) > 8) chart.plot.setSize({ width: width, height: 180 });
  }
}

function renderCharts(s) {
  const h = s.history;
  const resources = {};
  let top = 1;
  for (const [name, values] of Object.entries(h.series)) {
    // Amounts of slots on one axis; the byte-sized ones have charts of their own.
    if (name === "object_store_memory" || name === "memory") continue;
    if (name !== "CPU" && !s.resources.total[name]) continue;
    resources[name] = values;
    top = Math.max(top, s.resources.total[name] || 0);
  }
  lineChart("resources", document.getElementById("chart-resources"), h.t_ms, resources, amount,
            top);
  lineChart("store", document.getElementById("chart-store"), h.t_ms,
    { "store used": h.series.object_store_memory || [] }, bytes, 1 << 20);
}

function renderStore(s) {
  const o = s.objects;
  const share = o.store_capacity ? Math.min(100, (100 * o.store_used) / o.store_capacity) : 0;
  document.getElementById("store").replaceChildren(
    el("div", {},
      el("span", { id: "store-used", "data-bytes": o.store_used }, bytes(o.store_used)),
      " used of ",
      el("span", { id: "store-capacity", "data-bytes": o.store_capacity }, bytes(o.store_capacity)),
      " shared memory"),
    el("div", { class: "bar" }, el("div", { style: "width:" + share.toFixed(1) + "%" })),
    el("div", {},
      el("span", { id: "objects-count" }, o.count), " objects; ",
      el("span", { id: "spilled-bytes", "data-bytes": o.spilled_bytes }, bytes(o.spilled_bytes)),
      " spilled (", el("span", { id: "spilled-objects" }, o.spilled_objects), " objects)"));
}

// Lanes by worker process; one rectangle per task or actor call that ran there.
function renderStream(s) {
  const st = s.stream;
  const target = document.getElementById("stream");
  const width = Math.max(400, target.clientWidth);
  const left = 150, right = 8, laneH = 16, gap = 3, top = 4;
  // A lane is named by what runs there: an actor's class, or a task worker.
  const labels = new Map(s.workers.map((w) => [w.pid, w.kind === "task" ? "task worker" : w.kind]));
  for (const a of s.actors.rows) if (a.pid && a.state !== "DEAD") labels.set(a.pid, a.class_name);
  const pids = [...new Set(st.spans.map((sp) => sp[0]))].sort((a, b) => a - b);
  const height = top + pids.length * (laneH + gap) + 18;
  // From the first span shown (at least 10 s back), at most the whole window.
  const first = Math.min(...st.spans.map((sp) => sp[2]), s.now_ms - 10000);
  const x0 = Math.max(st.since_ms, first - 1000), x1 = s.now_ms;
  const x = (t) => left + ((Math.max(t, x0) - x0) / (x1 - x0)) * (width - left - right);
  const root = svg("svg", { width: width, height: height, viewBox: `0 0 ${width} ${height}`,
                           "data-spans": st.spans.length });
  const laneOf = new Map(pids.map((p, i) => [p, i]));
  pids.forEach((pid, i) => {
    const y = top + i * (laneH + gap);
    root.append(svg("rect", { class: "lane", x: left, y: y, width: width - left - right,
                              height: laneH }));
    const label = (labels.get(pid) || "ended") + " · " + pid;
    root.append(svg("text", { class: "lane-label", x: 4, y: y + laneH - 4 },
                    label.length > 24 ? label.slice(0, 23) + "…" : label));
  });
  const names = new Set();
  for (const [pid, name, start, end, failed] of st.spans) {
    const y = top + laneOf.get(pid) * (laneH + gap);
    const xa = x(start), xb = x(end === null ? x1 : end);
    names.add(name);
    const rect = svg("rect", { class: "span" + (failed ? " failed" : ""), x: xa, y: y + 1,
                               width: Math.max(1, xb - xa), height: laneH - 2,
                               fill: colorOf(name) });
    const took = end === null ? "running" : ms(end - start);
    rect.append(svg("title", {}, `${name} on pid ${pid}: ${took}${failed ? " (failed)" : ""}`));
    root.append(rect);
  }
  const axisY = height - 4;
  for (let k = 0; k <= 4; k++) {
    const t = x0 + ((x1 - x0) * k) / 4;
    const ago = Math.round((x1 - t) / 1000);
    root.append(svg("text", { class: "axis", x: x(t) - (k === 4 ? 14 : 0), y: axisY },
                    ago ? `-${ago} s` : "now"));
  }
  const legend = el("div", { class: "legend" },
    ...[...names].sort().slice(0, 30).map((n) => el("span", {},
      el("i", { style: "background:" + colorOf(n) }), n)));
  if (!pids.length) target.replaceChildren(el("div", { class: "muted" }, "nothing ran lately"));
  else target.replaceChildren(root, legend);
  document.getElementById("stream-window").textContent = `(last ${Math.round(st.window_s)} s)`;
}

function renderTasks(s) {
  const rows = s.tasks.by_function;
  const order = ["RUNNING", "FINISHED", "FAILED"];
  const states = new Set();
  for (const r of rows) for (const k of Object.keys(r.counts)) states.add(k);
  const columns = [...order.filter((k) => states.has(k) || k !== "RUNNING"),
                   ...[...states].filter((k) => !order.includes(k)).sort()];
  const table = document.getElementById("tasks-table");
  table.tHead.replaceChildren(el("tr", {}, el("th", {}, "function"), el("th", {}, "type"),
    ...columns.map((c) => el("th", { class: "num" }, c.toLowerCase().replace(/_/g, " "))),
    el("th", { class: "num" }, "mean"), el("th", { class: "num" }, "p50")));
  replaceBody(table, rows.map((r) => el("tr", { "data-func": r.name, "data-type": r.type },
    el("td", { class: "name", title: r.name }, r.name),
    el("td", { class: "muted" }, r.type.replace("_TASK", "").toLowerCase().replace(/_/g, " ")),
    ...columns.map((c) => el("td", { class: "num" + (r.counts[c] ? " " + c : ""), "data-state": c },
                             r.counts[c] || 0)),
    el("td", { class: "num", "data-field": "mean_ms" }, ms(r.mean_ms)),
    el("td", { class: "num", "data-field": "p50_ms" }, ms(r.p50_ms)))));
}

function renderActors(s) {
  const a = s.actors;
  const summary = Object.entries(a.states).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ");
  const head = document.getElementById("actors-summary");
  head.replaceChildren(el("span", { id: "actors-total" }, a.total), summary ? ` (${summary})` : "");
  replaceBody(document.getElementById("actors-table"), a.rows.map((r) =>
    el("tr", { "data-actor-id": r.actor_id },
      el("td", { "data-field": "class_name" }, r.class_name),
      el("td", { "data-field": "name" }, r.name),
      el("td", { "data-field": "state", class: r.state }, r.state),
      el("td", { "data-field": "num_restarts", class: "num" }, r.num_restarts),
      el("td", { "data-field": "pid", class: "num" }, r.pid || ""))));
}

function renderWorkers(s) {
  replaceBody(document.getElementById("workers-table"), s.workers.map((w) =>
    el("tr", { "data-pid": w.pid },
      el("td", { class: "num" }, w.pid),
      el("td", { "data-field": "kind" }, w.kind),
      el("td", { "data-field": "state" }, w.state),
      el("td", { class: "name", "data-field": "running" }, w.running || ""),
      el("td", { class: "num", "data-field": "cpu_percent" },
         w.cpu_percent === undefined ? "" : w.cpu_percent.toFixed(0) + " %"),
      el("td", { class: "num", "data-field": "rss", "data-bytes": w.rss }, bytes(w.rss)))));
}

function renderDrivers(s) {
  const section = document.getElementById("drivers-section");
  section.hidden = s.kind !== "head";
  replaceBody(document.getElementById("drivers-table"), s.drivers.map((d) =>
    el("tr", { "data-job": d.job_id },
      el("td", {}, d.job_id), el("td", { class: "num" }, d.driver_pid),
      el("td", {}, d.namespace), el("td", { class: "name" }, d.entrypoint))));
}

function render(s) {
  document.getElementById("kind").textContent =
    s.kind === "head" ? "shared head" : "embedded in the driver";
  renderCards(s);
  renderStore(s);
  renderCharts(s);
  renderStream(s);
  renderTasks(s);
  renderActors(s);
  renderWorkers(s);
  renderDrivers(s);
  const status = document.getElementById("status");
  status.textContent = "updated " + new Date(s.now_ms).toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
}

// ------------------------------------------------------------ polling

let timer = null;
let inflight = false;

async function poll() {
  timer = null;
  if (inflight) return;
  inflight = true;
  try {
    const response = await fetch("/api/snapshot", { cache: "no-store" });
    if (!response.ok) throw new Error(response.status + " " + (await response.text()));
    render(await response.json());
  } catch (e) {
    document.getElementById("status").textContent = "disconnected: " + e.message;
  } finally {
    inflight = false;
  }
  schedule();
}

function schedule() {
  // A hidden tab asks for nothing: the runtime pays only while someone looks.
  if (timer === null && !inflight && !document.hidden) timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && timer === null && !inflight) poll();
});
poll();
