// alto-stream ui: the topology graph, the query list, the waterfalls and the dead letters.
// Plain JavaScript and inline SVG: no build step, nothing loaded from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b82f6", "#10b981", "#f59e0b", "#8b5cf6", "#ef4444", "#0ea5e9", "#84cc16",
  "#ec4899", "#14b8a6", "#f97316", "#6366f1", "#a3a3a3"];
const MAX_QUERIES = 300;
const MAX_LETTERS = 500;  // what the server keeps (DeadLetterBoard.limit)
const state = { graph: null, stages: {}, queries: new Map(), letters: new Map(), lettersTotal: 0, selected: null,
  waterfallRev: -1, waterfallAt: 0, stageColor: {} };

// -- small helpers -----------------------------------------------------------------------------

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
const $ = (sel) => document.querySelector(sel);
const short = (id) => (id || "").slice(0, 10);
const json = (v) => (v === undefined ? "" : JSON.stringify(v));
function clip(text, n = 80) { text = String(text ?? ""); return text.length > n ? text.slice(0, n - 1) + "…" : text; }
function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds >= 10 ? seconds.toFixed(1) + " s" : (seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0) + " ms";
}
function clock(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString([], { hour12: false }) : ""; }
function num(v) { return v === null || v === undefined ? "?" : v >= 100 ? Math.round(v) : +v.toFixed(1); }
function preview(value) {
  if (value && typeof value === "object" && Object.keys(value).length === 1 && "text" in value) return value.text;
  return json(value);
}
function colorOf(stage) {
  if (!(stage in state.stageColor)) {
    state.stageColor[stage] = PALETTE[Object.keys(state.stageColor).length % PALETTE.length];
  }
  return state.stageColor[stage];
}
async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}
const tooltip = $("#tooltip");
function hover(node, text) {
  node.addEventListener("mousemove", (e) => {
    tooltip.textContent = typeof text === "function" ? text() : text;
    tooltip.hidden = false;
    tooltip.style.left = Math.min(e.clientX + 12, innerWidth - 430) + "px";
    tooltip.style.top = e.clientY + 14 + "px";
  });
  node.addEventListener("mouseleave", () => { tooltip.hidden = true; });
}

// -- topology graph ----------------------------------------------------------------------------

const NODE_W = 150, NODE_H = 66, COL_W = 178, ROW_H = 92, PAD = 34;

function drawGraph(graph) {
  const width = PAD + graph.columns * COL_W, height = 12 + graph.rows * ROW_H;
  // Scaled down to the panel's width when the app has more stages than fit.
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, id: "graph-svg",
    style: `width:100%;max-width:${width}px;height:auto` });
  const pos = {};
  for (const n of graph.nodes) pos[n.id] = { x: PAD + n.x * COL_W, y: 10 + n.y * ROW_H, node: n };
  const rowsAtDepth = {};
  for (const n of graph.nodes) {
    const r = rowsAtDepth[n.depth] || (rowsAtDepth[n.depth] = { min: n.y, max: n.y });
    r.min = Math.min(r.min, n.y); r.max = Math.max(r.max, n.y);
  }
  for (const [depth, r] of Object.entries(rowsAtDepth)) {
    const y = 4 + r.min * ROW_H, h = (r.max - r.min + 1) * ROW_H;
    svg.append(el("svg:rect", { class: "band" + (depth % 2 ? " odd" : ""), x: 0, y, width, height: h }));
    const label = el("svg:text", { class: "band-label", x: 4, y: y + h / 2 + 3,
      transform: `rotate(-90 12 ${y + h / 2})` }, `depth ${depth}`);
    svg.append(label);
  }
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" }));
  defs.append(marker);
  svg.append(defs);
  for (const e of graph.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    if (e.kind === "flow") {
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mx = (x1 + x2) / 2;
      const path = el("svg:path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}`,
        "marker-end": "url(#arrow)" });
      hover(path, `topic ${e.topic}`);
      svg.append(path);
    } else {
      const x1 = a.x + NODE_W / 2, y1 = a.y + NODE_H, x2 = b.x + NODE_W / 2, y2 = b.y + NODE_H;
      const dip = Math.max(y1, y2) + 22;
      const path = el("svg:path", { class: "edge closes", d: `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}` });
      hover(path, `${e.from} closes the level opened by ${e.to}`);
      svg.append(path);
    }
  }
  for (const n of graph.nodes) {
    const p = pos[n.id];
    const g = el("svg:g", { class: `node ${n.kind}`, "data-id": n.id, transform: `translate(${p.x},${p.y})` });
    g.append(el("svg:rect", { width: NODE_W, height: NODE_H }));
    if (n.kind === "input" || n.kind === "output") {
      g.append(el("svg:text", { class: "kind", x: 10, y: 17 }, n.kind === "input" ? "input topic" : "output topic"));
      g.append(el("svg:text", { class: "title", x: 10, y: 35 }, clip(n.label, 22)));
      g.append(el("svg:text", { class: "kind", x: 10, y: 52 }, n.schema));
      hover(g, `${n.topic}\nschema ${n.schema}`);
    } else {
      g.append(el("svg:text", { class: "title", x: 10, y: 16 }, clip(n.label, 20)));
      const kind = n.kind === "aggregate" ? `aggregate · closes ${n.closes}`
        : n.kind === "split" ? `split · depth ${n.depth_in}→${n.depth}` : `${n.kind} · depth ${n.depth}`;
      g.append(el("svg:text", { class: "kind", x: 10, y: 29 }, clip(kind, 28)));
      g.append(el("svg:text", { class: "figures line1", x: 10, y: 44 }, ""));
      g.append(el("svg:text", { class: "figures line2", x: 10, y: 58 }, ""));
      hover(g, () => stageTip(n));
    }
    svg.append(g);
  }
  $("#graph").replaceChildren(svg);
  updateStages();
}

function stageTip(n) {
  const s = state.stages[n.id] || {};
  return `${n.id} (${n.kind})\nreads ${n.input_topic}\nwrites ${n.topic}\ndead letters ${n.dead_letter_topic}` +
    `\ngroup ${n.group}\nreplicas ${num(s.replicas)}, in ${num(s.in_per_s)}/s, out ${num(s.out_per_s)}/s` +
    `\nin flight ${num(s.in_flight)}, lag ${num(s.lag)}, dead letters ${num(s.dead_letters)}` +
    (s.errors !== null && s.errors !== undefined ? `, errors ${s.errors}` : "");
}

function setFigures(text, parts) {
  text.replaceChildren();
  for (const [label, bad] of parts) {
    text.append(el("svg:tspan", bad ? { class: "bad" } : {}, label));
    text.append(document.createTextNode(" "));
  }
}

function updateStages() {
  for (const g of document.querySelectorAll("#graph .node")) {
    const s = state.stages[g.dataset.id];
    if (!s) continue;
    const errors = Math.max(s.dead_letters || 0, s.errors || 0);
    g.classList.toggle("has-errors", errors > 0);
    setFigures(g.querySelector(".line1"), [
      [`×${num(s.replicas)}`, s.replicas === 0], [`in ${num(s.in_per_s)}/s`], [`out ${num(s.out_per_s)}/s`]]);
    setFigures(g.querySelector(".line2"), [
      [`flight ${num(s.in_flight)}`], [`lag ${num(s.lag)}`, (s.lag || 0) > 0], [`err ${errors}`, errors > 0]]);
    g.dataset.replicas = s.replicas ?? "";
    g.dataset.lag = s.lag ?? "";
  }
}

// -- queries -----------------------------------------------------------------------------------

function badge(status) { return el("span", { class: `badge ${status}` }, status); }

function renderQueries() {
  const body = $("#queries tbody");
  const rows = [...state.queries.values()].sort((a, b) => b.query_time - a.query_time);
  body.replaceChildren(...rows.map((q) => {
    const tr = el("tr", { class: "query" + (q.id === state.selected ? " selected" : ""), "data-id": q.id,
      "data-status": q.status });
    tr.append(el("td", {}, clock(q.query_time)));
    const idCell = el("td", { class: "mono" }, short(q.id));
    if (q.replay_of) idCell.append(" ", el("span", { class: "badge replay", title: `replay of ${q.replay_of}` }, "replay"));
    tr.append(idCell);
    const input = el("td", { class: "preview" }, q.input === null ? "" : clip(preview(q.input), 60));
    const latest = q.partials[q.partials.length - 1];
    if (latest && !q.final) {  // partial results as they stream in: the newest under the input
      input.append(el("div", { class: "partial dim small" },
        `[${latest.index.join(".")}] ${latest.stage}: ${clip(preview(latest.value), 60)}`));
    }
    tr.append(input);
    const status = el("td", {}); status.append(badge(q.status));
    if (q.dead_letters) status.append(" ", el("span", { class: "error-text small" }, `${q.dead_letters} dlq`));
    tr.append(status);
    tr.append(el("td", {}, ms(q.latency)));
    tr.append(el("td", {}, String(q.partials.length)));
    const final = q.final ? (q.final.kind === "DATA" ? preview(q.final.value) : `${q.final.kind} ${q.final.reason || ""}`) : "";
    hover(tr, () => `query ${q.id}${q.replay_of ? `\nreplay of ${q.replay_of}` : ""}\ninput ${json(q.input)}` +
      (final ? `\nresult ${clip(final, 300)}` : "") +
      q.partials.slice(-5).map((p) => `\npartial [${p.index.join(".")}] ${p.stage}: ${clip(preview(p.value), 80)}`).join(""));
    tr.addEventListener("click", () => selectQuery(q.id));
    return tr;
  }));
  $("#no-queries").hidden = rows.length > 0;
  $("#query-count").textContent = rows.length ? `${rows.length} shown` : "";
}

async function selectQuery(id) {
  state.selected = id;
  state.waterfallRev = -1;
  renderQueries();
  await loadWaterfall();
}

async function loadWaterfall() {
  const id = state.selected;
  if (!id) return;
  const q = state.queries.get(id);
  state.waterfallRev = q ? q.rev : 0;
  state.waterfallAt = Date.now();
  $("#waterfall-title").textContent = `query ${id}`;
  try {
    const data = await api(`/api/queries/${encodeURIComponent(id)}/waterfall`);
    if (state.selected === id) drawWaterfall(data);
  } catch (err) {
    $("#waterfall").replaceChildren(el("p", { class: "error-text" }, String(err.message || err)));
  }
}

// -- waterfall ---------------------------------------------------------------------------------

const LABEL_W = 130, ROW = 15, AXIS_H = 20;

function drawWaterfall(w) {
  const box = $("#waterfall");
  const width = Math.max(box.clientWidth - 20, 480), plotW = width - LABEL_W - 10;
  const span = Math.max(w.span, 0.001);
  const x = (t) => LABEL_W + (t / span) * plotW;
  const height = AXIS_H + w.rows.length * ROW + 8;
  const svg = el("svg:svg", { width, height, id: "waterfall-svg", "data-query": w.query_id });
  const axis = el("svg:g", { class: "axis" });
  for (let i = 0; i <= 5; i++) {
    const t = (span * i) / 5, xi = x(t);
    axis.append(el("svg:line", { x1: xi, x2: xi, y1: AXIS_H - 4, y2: height }));
    axis.append(el("svg:text", { x: xi, y: 11, "text-anchor": i === 0 ? "start" : i === 5 ? "end" : "middle" }, ms(t)));
  }
  svg.append(axis);
  const centers = {};
  w.rows.forEach((row, i) => {
    const y = AXIS_H + i * ROW;
    const label = (row.index.length ? row.index.join(".") : "query");
    svg.append(el("svg:text", { class: "row-label" + (row.critical ? " critical" : ""), x: 4 + row.level * 8, y: y + 11 },
      clip(label, 16)));
    for (const bar of row.bars) {
      const x1 = x(bar.start), x2 = x(bar.end);
      const key = `${row.id}|${bar.stage}`;
      centers[key] = { x: x2, y: y + ROW / 2 };
      if (bar.kind === "DATA") {
        const rect = el("svg:rect", { class: "bar" + (bar.critical ? " critical" : ""), x: x1, y: y + 2,
          width: Math.max(x2 - x1, 2), height: ROW - 4, fill: colorOf(bar.stage), rx: 2,
          "data-stage": bar.stage, "data-kind": bar.kind });
        hover(rect, () => barTip(row, bar));
        svg.append(rect);
      } else {
        if (x2 - x1 > 1) svg.append(el("svg:rect", { class: "bar", x: x1, y: y + ROW / 2 - 1, width: x2 - x1, height: 2,
          fill: colorOf(bar.stage) }));
        const mark = markerShape(bar.kind.toLowerCase(), x2, y + ROW / 2);
        mark.setAttribute("data-stage", bar.stage);
        mark.setAttribute("data-kind", bar.kind);
        if (bar.critical) mark.classList.add("critical");
        hover(mark, () => barTip(row, bar));
        svg.append(mark);
      }
    }
  });
  const path = w.critical_path.map((h) => centers[`${h.id}|${h.stage}`]).filter(Boolean);
  if (path.length > 1) {
    svg.append(el("svg:polyline", { class: "critical-line", points: path.map((p) => `${p.x},${p.y}`).join(" ") }));
  }
  const summary = el("p", { class: "wf-summary" });
  summary.append(el("b", {}, w.finished ? `latency ${ms(w.latency)}` : "not finished"),
    el("b", {}, `${w.records} records`), el("b", {}, `${w.rows.length} fragments`));
  if (w.replay_of) summary.append(el("span", { class: "badge replay" }, `replay of ${short(w.replay_of)}`));
  const legend = el("div", { class: "legend" });
  for (const stage of w.stage_order) {
    const item = el("span", {}); item.append(el("i", { style: `background:${colorOf(stage)}` }), stage); legend.append(item);
  }
  for (const [kind, label] of [["critical", "critical path"], ["skip", "skip"], ["error", "error"], ["timeout", "timeout"], ["end", "end of split"]]) {
    const color = { critical: "var(--critical)", skip: "var(--skip)", error: "var(--error)", timeout: "var(--timeout)", end: "var(--end)" }[kind];
    const item = el("span", {}); item.append(el("i", { style: `background:${color}` }), label); legend.append(item);
  }
  box.replaceChildren(summary, legend, svg, stageTable(w), recordsTable(w));
}

function markerShape(kind, cx, cy) {
  const r = 5;
  if (kind === "skip") return el("svg:polygon", { class: "marker skip", points: `${cx},${cy - r} ${cx + r},${cy} ${cx},${cy + r} ${cx - r},${cy}` });
  if (kind === "error") return el("svg:path", { class: "marker error", d: `M${cx - r},${cy - r} L${cx + r},${cy + r} M${cx + r},${cy - r} L${cx - r},${cy + r}`, stroke: "var(--error)", "stroke-width": 3 });
  if (kind === "timeout") return el("svg:rect", { class: "marker timeout", x: cx - r, y: cy - r, width: 2 * r, height: 2 * r });
  return el("svg:rect", { class: "marker end", x: cx - 1.5, y: cy - r, width: 3, height: 2 * r });
}

function barTip(row, bar) {
  return `${bar.stage} [${row.index.join(".") || "query"}] ${bar.kind}${bar.critical ? " (critical path)" : ""}` +
    `\nat ${ms(bar.end)}, took ${ms(bar.took)}` + (bar.count !== null ? `, count ${bar.count}` : "") +
    `\n${bar.topic}[${bar.partition}]@${bar.offset}` + (bar.reason ? `\nreason ${bar.reason}` : "") +
    (bar.value !== null ? `\n${clip(json(bar.value), 300)}` : "");
}

function stageTable(w) {
  const table = el("table", { class: "stages" });
  const head = el("tr"); for (const h of ["stage", "records", "span", "longest", "on critical path"]) head.append(el("th", {}, h));
  table.append(head);
  for (const s of w.stages) {
    const tr = el("tr");
    const name = el("td"); name.append(el("i", { style: `display:inline-block;width:9px;height:9px;margin-right:4px;background:${colorOf(s.stage)}` }), s.stage);
    tr.append(name, el("td", {}, s.records), el("td", {}, ms(s.span)), el("td", {}, ms(s.longest)),
      el("td", s.on_critical_path ? { style: "color:var(--critical);font-weight:600" } : {}, ms(s.on_critical_path)));
    table.append(tr);
  }
  return table;
}

function recordsTable(w) {
  const wrap = el("div", { class: "records" });
  wrap.append(el("h2", {}, "Records it produced"));
  const table = el("table", { id: "waterfall-records" });
  const head = el("tr"); for (const h of ["at", "stage", "fragment", "kind", "value"]) head.append(el("th", {}, h));
  table.append(head);
  const bars = w.rows.flatMap((row) => row.bars.map((bar) => ({ row, bar }))).sort((a, b) => a.bar.end - b.bar.end);
  for (const { row, bar } of bars) {
    if (bar.stage === "client") continue;
    const tr = el("tr", { "data-kind": bar.kind });
    tr.append(el("td", {}, ms(bar.end)), el("td", {}, bar.stage), el("td", { class: "mono" }, row.index.join(".") || "query"),
      el("td", {}, bar.kind), el("td", { class: "mono" }, bar.kind === "DATA" ? clip(preview(bar.value), 140) : bar.reason || ""));
    table.append(tr);
  }
  wrap.append(table);
  return wrap;
}

// -- dead letters ------------------------------------------------------------------------------

function renderLetters() {
  const body = $("#letters tbody");
  const letters = [...state.letters.values()].sort((a, b) => b.time - a.time);
  body.replaceChildren(...letters.map((d) => {
    const key = `${d.topic}:${d.partition}:${d.offset}`;
    const tr = el("tr", { class: "letter", "data-key": key, "data-query": d.query_id || "" });
    tr.append(el("td", {}, clock(d.time)), el("td", {}, d.stage));
    const reason = d.error_type && !(d.error || "").startsWith(d.error_type) ? `${d.error_type}: ${d.error}` : d.error;
    tr.append(el("td", { class: "reason", title: reason || "" }, clip(reason, 160)));
    const q = el("td", { class: "mono" }, short(d.query_id));
    if (d.query_id) { q.style.cursor = "pointer"; q.addEventListener("click", () => selectQuery(d.query_id)); }
    tr.append(q);
    const rec = d.record || {};
    tr.append(el("td", { class: "mono preview" }, rec.error ? rec.error : clip(`${rec.kind || ""} ${preview(rec.value)}`, 80)));
    tr.append(el("td", { class: "mono dim" }, `${d.topic}[${d.partition}]@${d.offset}`));
    const actions = el("td");
    const button = el("button", { class: "replay", title: `replay into stage ${d.stage} under a new query id` }, "replay");
    button.addEventListener("click", () => replay(d, button, actions));
    actions.append(button);
    if (d.warning) actions.append(el("div", { class: "error-text small" }, d.warning));
    for (const r of d.replays || []) {
      const s = el("div", { class: "replay-status small", "data-query": r.query_id, "data-status": r.status });
      const link = el("span", { class: "mono", style: "cursor:pointer" }, `→ ${short(r.query_id)} `);
      link.addEventListener("click", () => selectQuery(r.query_id));
      s.append(link, badge(r.status));
      actions.append(s);
    }
    tr.append(actions);
    return tr;
  }));
  $("#no-letters").hidden = letters.length > 0;
  const total = Math.max(state.lettersTotal, letters.length);
  $("#letter-count").textContent = !letters.length ? "" :
    total > letters.length ? `${letters.length} of ${total} (the newest)` : `${letters.length}`;
}

async function replay(d, button, cell) {
  button.disabled = true;
  try {
    const result = await api("/api/replay", { topic: d.topic, partition: d.partition, offset: d.offset });
    const ids = result.replays.map((r) => r.query_id);
    const known = state.letters.get(`${d.topic}:${d.partition}:${d.offset}`);
    if (known) {
      known.replays = [...(known.replays || []), ...ids.map((q) => ({ query_id: q, status: "sent" }))];
      if (result.warning) known.warning = result.warning;
    }
    renderLetters();
  } catch (err) {
    cell.append(el("div", { class: "error-text small" }, String(err.message || err)));
  } finally {
    button.disabled = false;
  }
}

// -- live state --------------------------------------------------------------------------------

// The badge above says whether the page reaches this server; this one whether the server
// reaches Kafka: while it does not, the stage figures are the last Kafka gave, dimmed.
function showFreshness(board) {
  const badge = $("#kafka");
  const stale = Boolean(board.stale);
  $("#graph").classList.toggle("stale", stale);
  badge.hidden = !stale;
  if (!stale) return;
  const why = board.unreachable_since ? `Kafka unreachable since ${clock(board.unreachable_since)}` : "Kafka not answering";
  badge.textContent = `${why}: ${board.time ? `figures of ${clock(board.time)}` : "no figures yet"}`;
  badge.title = board.error || "the stage figures are the last Kafka gave";
}

function applyState(data) {
  state.stages = data.stages.stages || {};
  updateStages();
  showFreshness(data.stages);
  for (const q of data.queries) state.queries.set(q.id, q);
  if (state.queries.size > MAX_QUERIES) {  // the server keeps the newest few hundred: so do we
    const old = [...state.queries.values()].sort((a, b) => a.query_time - b.query_time);
    for (const q of old.slice(0, state.queries.size - MAX_QUERIES)) {
      if (q.id !== state.selected) state.queries.delete(q.id);
    }
  }
  for (const d of data.letters) state.letters.set(`${d.topic}:${d.partition}:${d.offset}`, d);
  if (state.letters.size > MAX_LETTERS) {  // the oldest go, as on the server
    const old = [...state.letters.entries()].sort((a, b) => a[1].time - b[1].time);
    for (const [key] of old.slice(0, state.letters.size - MAX_LETTERS)) state.letters.delete(key);
  }
  const totalChanged = data.letters_total !== undefined && data.letters_total !== state.lettersTotal;
  if (data.letters_total !== undefined) state.lettersTotal = data.letters_total;
  if (data.queries.length) renderQueries();
  if (data.letters.length || totalChanged) renderLetters();
  const sel = state.selected && state.queries.get(state.selected);
  // A running query's fragments move on without its entry changing: redraw it every 2 s.
  const stale = sel && sel.status === "running" && Date.now() - state.waterfallAt > 2000;
  if (sel && (sel.rev !== state.waterfallRev || stale)) loadWaterfall();
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { $("#live").textContent = "live"; $("#live").classList.remove("off"); });
  source.addEventListener("error", () => { $("#live").textContent = "reconnecting"; $("#live").classList.add("off"); });
  source.addEventListener("state", (e) => applyState(JSON.parse(e.data)));
}

$("#push-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const raw = $("#push-text").value.trim();
  if (!raw) return;
  let body = { text: raw };
  if (raw.startsWith("{")) { try { body = { value: JSON.parse(raw) }; } catch (_) { /* push it as text */ } }
  try {
    const { query_id } = await api("/api/push", body);
    $("#push-result").textContent = `pushed ${short(query_id)}`;
    $("#push-text").value = "";
    selectQuery(query_id);
  } catch (err) {
    $("#push-result").textContent = String(err.message || err);
  }
});

(async function main() {
  const graph = await api("/api/graph");
  state.graph = graph;
  for (const n of graph.nodes) if (n.kind !== "input" && n.kind !== "output") colorOf(n.id);
  colorOf("client");
  $("#app-name").textContent = graph.app;
  $("#cluster").textContent = graph.bootstrap ? `on ${graph.bootstrap}` : "";
  document.title = `alto-stream · ${graph.app}`;
  drawGraph(graph);
  renderQueries();
  renderLetters();
  connect();
})();
