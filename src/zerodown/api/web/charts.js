// zerodown dashboard charts: request rate, error rate and p99 latency per release over the
// rollout, from GET /api/series (the router's per-request samples, bucketed by the controller),
// with each analysis threshold as a dashed line and each decision as a marker. Plain SVG built
// through the DOM: no library, no CDN (the page's CSP allows only this origin's scripts).
// Uses h(), $(), getJSON() and releaseColor() from app.js, which loads first.
"use strict";

const CHARTS_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 150;
const PAD = { left: 48, right: 8, top: 14, bottom: 20 };
const CHARTS = [
  { key: "rate", title: "requests/s", fmt: (v) => v.toFixed(v < 10 ? 1 : 0) },
  { key: "errors", title: "error rate", fmt: (v) => `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%` },
  { key: "p99", title: "p99 latency", fmt: (v) => (v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(2)} s`) },
];

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

// Consecutive points with a value; a bucket without requests breaks the line.
function segments(values, x, y) {
  const out = [];
  let current = [];
  values.forEach((v, i) => {
    if (v === null || v === undefined) {
      if (current.length) out.push(current);
      current = [];
    } else {
      current.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    }
  });
  if (current.length) out.push(current);
  return out;
}

function chart(spec, series) {
  const releases = Object.entries(series.releases);
  const lines = series.thresholds.filter((t) => t.chart === spec.key);
  const values = releases.flatMap(([, r]) => r[spec.key]).filter((v) => v !== null);
  const top = Math.max(...values, ...lines.map((t) => t.value), spec.key === "errors" ? 0.01 : 1e-3) * 1.15;
  const n = Math.max(1, ...releases.map(([, r]) => r[spec.key].length));
  const span = n * series.step;
  const x = (i) => PAD.left + ((i + 0.5) / n) * (W - PAD.left - PAD.right);
  const xAt = (t) => PAD.left + ((t - series.start) / span) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": spec.title });
  svg.append(
    s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: "axis" }),
    s("text", { x: PAD.left - 4, y: y(top / 1.15) + 4, class: "tick", "text-anchor": "end" }, spec.fmt(top / 1.15)),
    s("text", { x: PAD.left - 4, y: y(0), class: "tick", "text-anchor": "end" }, spec.fmt(0)),
  );
  for (const d of series.decisions) {
    const at = xAt(d.at);
    if (at < PAD.left || at > W - PAD.right) continue;
    svg.append(
      s("line", { x1: at, x2: at, y1: PAD.top, y2: H - PAD.bottom, class: "decision", "data-kind": d.kind },
        s("title", {}, `${clock(d.at)} ${d.kind}: ${d.message}`)),
      s("text", { x: at + 2, y: PAD.top - 3, class: "decision-label" }, d.kind),
    );
  }
  for (const t of lines) {
    svg.append(
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(t.value), y2: y(t.value), class: "threshold", "data-value": t.value },
        s("title", {}, t.label)),
      s("text", { x: W - PAD.right - 2, y: y(t.value) - 3, class: "threshold-label", "text-anchor": "end" },
        `${spec.fmt(t.value)} · ${t.label}`),
    );
  }
  for (const [release, r] of releases) {
    const color = releaseColor(release, series.stable);
    for (const points of segments(r[spec.key], x, y)) {
      svg.append(s("polyline", { points: points.join(" "), class: "series", "data-release": release, stroke: color }));
    }
  }
  return h("figure", { class: "chart-box", "data-chart": spec.key },
    h("figcaption", {}, spec.title, ...releases.map(([release]) => chip(release, series.stable))), svg);
}

function renderCharts(series) {
  const box = $("charts");
  if (!Object.keys(series.releases).length) {
    box.replaceChildren(h("p", { class: "muted" }, "no traffic through the router yet"));
    return;
  }
  box.replaceChildren(...CHARTS.map((spec) => chart(spec, series)));
}

async function refreshCharts() {
  try {
    renderCharts(await getJSON("/api/series"));
  } catch (err) {
    // app.js says when the controller is unreachable or needs a token; the charts just wait
  } finally {
    setTimeout(refreshCharts, CHARTS_MS);
  }
}

refreshCharts();
