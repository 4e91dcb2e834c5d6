// movierec's dashboard: asks Prometheus's HTTP API (query_range) and draws each panel with uPlot.
// Every panel element gets data-series / data-points once drawn, so a test (headless Chromium)
// can tell a panel with data from an empty one; document.body gets data-ready when all are done.
"use strict";

const PALETTE = ["#4c8bf5", "#e8710a", "#2e7d32", "#c62828", "#8e24aa", "#00897b", "#6d4c41", "#f9a825"];
const PANELS = [
  { id: "availability", title: "Availability as the site logs it", unit: "%", scale: 100, min: null,
    note: "live: 1 - share of request lines down over 5 min (topic tail); lake: per hour, after each ingest",
    queries: [
      { q: '1 - movierec:site_errors:ratio_rate5m', name: m => `live ${m.server}` },
      { q: 'movierec_site_availability_ratio{window="1h"}', name: m => `lake 1h ${m.server}` },
      { q: 'vector(0.999)', name: () => "objective 99.9%", dash: true } ] },
  { id: "latency", title: "Latency", unit: "ms", scale: 1000,
    note: "p50 / p99 the site logged (its 800 ms budget), and the service's own p99",
    queries: [
      { q: 'histogram_quantile(0.5, sum by (le) (rate(movierec_site_request_latency_seconds_bucket[5m])))', name: () => "site p50" },
      { q: 'histogram_quantile(0.99, sum by (le) (rate(movierec_site_request_latency_seconds_bucket[5m])))', name: () => "site p99" },
      { q: 'histogram_quantile(0.99, sum by (le) (rate(movierec_recommend_latency_seconds_bucket[5m])))', name: () => "service p99" } ] },
  { id: "requests", title: "Request lines per second, by outcome", unit: "/s", scale: 1,
    queries: [ { q: 'sum by (outcome) (rate(movierec_site_requests_total[5m]))', name: m => m.outcome } ] },
  { id: "fallback", title: "Fallback share of answers", unit: "%", scale: 100,
    queries: [
      { q: 'sum(rate(movierec_site_fallback_answers_total[5m])) / sum(rate(movierec_site_requests_total{outcome=~"up|slow"}[5m]))', name: () => "site log" },
      { q: 'sum by (variant) (rate(movierec_fallback_answers_total[5m])) / sum by (variant) (rate(movierec_recommend_requests_total{status="200"}[5m]))', name: m => `service ${m.variant || ""}` } ] },
  { id: "online", title: "Online metric: minutes watched from our lists per answer", unit: "min", scale: 1,
    note: "the experiments' primary metric, latest complete hour, per model version and variant (all: every answer)",
    queries: [ { q: 'movierec_online_list_minutes_per_answer{period="hour"}', name: m => `${m.model_version} ${m.variant}` } ] },
  { id: "drift", title: "Drift (PSI of the latest batch, per signal)", unit: "", scale: 1,
    note: "flagged above 0.25 with p < 0.001",
    queries: [ { q: 'movierec_drift_statistic', name: m => m.signal }, { q: 'vector(0.25)', name: () => "threshold", dash: true } ] },
  { id: "lag", title: "Ingest lag", unit: "min", scale: 1 / 60, rawUnit: "k lines",
    note: "age of the oldest line not yet in the lake; lines waiting on the right axis",
    queries: [ { q: 'movierec_ingest_lag_seconds', name: () => "oldest line waiting" },
               { q: 'movierec_ingest_lag_lines / 1000', name: () => "k lines waiting", raw: true } ] },
  { id: "model", title: "Model version served (age in hours)", unit: "h", scale: 1 / 3600,
    note: "one line per version current pointed at; a swap starts a new line",
    queries: [ { q: 'time() - movierec_serving_model_created_timestamp_seconds', name: m => m.version } ] },
  { id: "restarts", title: "Restarts", unit: "", scale: 1,
    note: "service workers replaced, and programs restarted by the supervisor (per 5 min)",
    queries: [ { q: 'increase(movierec_worker_replacements_total[5m])', name: () => "workers replaced" },
               { q: 'increase(movierec_supervised_restarts_total[5m]) > 0', name: m => `restarted ${m.program}` } ] },
];
const STATS = [
  { q: 'movierec_site_availability_ratio{window="72h"}', k: "availability 72 h (lake)", fmt: pct, good: v => v >= 0.999 },
  { q: 'movierec_site_availability_ratio{window="96h"}', k: "availability 96 h (lake)", fmt: pct, good: v => v >= 0.999 },
  { q: '1 - movierec:site_errors:ratio_rate5m', k: "availability now (5 min)", fmt: pct, good: v => v >= 0.999 },
  { q: 'histogram_quantile(0.99, sum by (le) (rate(movierec_site_request_latency_seconds_bucket[5m]))) * 1000', k: "site p99 now", fmt: v => `${v.toFixed(0)} ms`, good: v => v < 400 },
  { q: 'sum(movierec_serving_model_info) by (version)', k: "model served", label: "version" },
  { q: 'count(ALERTS{alertstate="firing"}) or vector(0)', k: "alerts firing", fmt: v => v.toFixed(0), good: v => v === 0 },
];

let hours = 6, prom = "";
const plots = {};

function pct(v) { return `${(100 * v).toFixed(v > 0.999 ? 3 : 2)}%`; }

async function api(path, params) {
  const url = new URL(prom + path);
  Object.entries(params).forEach(([k, v]) => url.searchParams.set(k, v));
  const response = await fetch(url);
  const body = await response.json();
  if (body.status !== "success") throw new Error(body.error || response.statusText);
  return body.data.result;
}

async function drawPanel(panel, start, end, step) {
  const box = document.getElementById(`panel-${panel.id}`);
  const times = []; for (let t = start; t <= end; t += step) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));
  const series = [];
  for (const query of panel.queries) {
    let result = [];
    try { result = await api("/api/v1/query_range", { query: query.q, start, end, step }); }
    catch (error) { box.dataset.error = String(error); }
    for (const item of result) {
      const values = new Array(times.length).fill(null);
      for (const [t, v] of item.values) {
        const i = index.get(Math.round(t)); const x = parseFloat(v);
        if (i !== undefined && Number.isFinite(x)) values[i] = query.raw ? x : x * panel.scale;
      }
      series.push({ label: query.name(item.metric), values, dash: query.dash, raw: query.raw });
    }
  }
  const real = series.filter(s => !s.dash);
  const points = real.reduce((n, s) => n + s.values.filter(v => v !== null).length, 0);
  box.dataset.series = String(real.length); box.dataset.points = String(points);
  const chart = box.querySelector(".chart"); chart.innerHTML = "";
  if (plots[panel.id]) { plots[panel.id].destroy(); delete plots[panel.id]; }
  if (!points) {
    chart.innerHTML = `<div class="empty">no data in this range${panel.note ? "<br>" + panel.note : ""}</div>`;
    return;
  }
  const opts = {
    width: chart.clientWidth || 540, height: 220,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: s.dash ? "#9aa3b2" : PALETTE[i % PALETTE.length],
      scale: s.raw ? "raw" : "y",
      width: s.dash ? 1 : 2, dash: s.dash ? [6, 4] : undefined, spanGaps: false,
      value: (u, v) => v == null ? "–" : `${v.toFixed(panel.unit === "%" ? 2 : 1)} ${s.raw ? panel.rawUnit : panel.unit}` }))],
    axes: [{}, { label: panel.unit, size: 60 },
      ...(series.some(s => s.raw) ? [{ scale: "raw", side: 1, label: panel.rawUnit || "", size: 60, grid: { show: false } }] : [])],
    legend: { live: false },
  };
  plots[panel.id] = new uPlot(opts, [times, ...series.map(s => s.values)], chart);
}

async function drawStats() {
  const box = document.getElementById("stats"); box.innerHTML = "";
  for (const stat of STATS) {
    let text = "–", cls = "";
    try {
      const result = await api("/api/v1/query", { query: stat.q });
      if (stat.label) text = result.map(r => r.metric[stat.label]).join(", ") || "–";
      else if (result.length) {
        const v = Math.min(...result.map(r => parseFloat(r.value[1])));
        if (Number.isFinite(v)) { text = stat.fmt(v); cls = stat.good(v) ? "good" : "bad"; }
      }
    } catch (error) { text = "?"; }
    box.insertAdjacentHTML("beforeend", `<div class="stat ${cls}"><div class="v">${text}</div><div class="k">${stat.k}</div></div>`);
  }
}

async function drawAlerts() {
  const body = document.querySelector("#alerts tbody");
  const rows = await (await fetch("/api/alerts?limit=100")).json();
  body.innerHTML = rows.reverse().map(a => `<tr><td>${a.received_at.replace("T", " ").slice(0, 19)}</td>
    <td class="${a.status}">${a.status}</td><td>${a.alertname}</td>
    <td>${Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => `${k}=${v}`).join(" ")}</td>
    <td>${(a.annotations || {}).summary || ""}</td></tr>`).join("") || `<tr><td colspan="5">none received</td></tr>`;
  document.getElementById("alerts").dataset.rows = String(rows.length);
}

async function refresh() {
  delete document.body.dataset.ready;
  const end = Math.floor(Date.now() / 1000);
  const step = Math.max(15, Math.round(hours * 3600 / 300));
  const start = end - Math.floor(hours * 3600 / step) * step;
  await drawStats();
  await Promise.all(PANELS.map(p => drawPanel(p, start, end, step)));
  try { await drawAlerts(); } catch (error) { /* the receiver is this page's own server */ }
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.ready = "1";
}

async function main() {
  prom = (await (await fetch("/config.json")).json()).prometheus;
  document.getElementById("prom").textContent = prom;
  const params = new URLSearchParams(location.search);
  if (params.get("hours")) hours = parseFloat(params.get("hours"));
  document.getElementById("panels").innerHTML = PANELS.map(p =>
    `<div class="panel" id="panel-${p.id}"><h2>${p.title}${p.note ? ` <small>${p.note}</small>` : ""}</h2><div class="chart"></div></div>`).join("");
  document.querySelectorAll("#ranges button").forEach(b => {
    b.classList.toggle("on", parseFloat(b.dataset.hours) === hours);
    b.onclick = () => { hours = parseFloat(b.dataset.hours);
      document.querySelectorAll("#ranges button").forEach(x => x.classList.toggle("on", x === b)); refresh(); };
  });
  await refresh();
  setInterval(refresh, 30000);
}
main();
