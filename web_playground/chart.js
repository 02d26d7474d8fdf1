// A small line chart of recent trade prices, drawn as SVG sized to its box.

import { fmtPrice, sideClass } from "./format.js";

/** points: [{ price: number, side: 1 | -1, time: "12:00:01" }], oldest first. */
export function drawChart(box, points) {
  const width = Math.max(120, box.clientWidth);
  const height = Math.max(80, box.clientHeight);
  if (!points.length) {
    box.innerHTML = `<p class="chart-empty muted small">No trades yet: place two crossing orders.</p>`;
    return;
  }
  const pad = { left: 8, right: 64, top: 12, bottom: 24 };
  let lo = Math.min(...points.map((p) => p.price));
  let hi = Math.max(...points.map((p) => p.price));
  if (hi === lo) {
    const room = Math.max(Math.abs(lo) * 0.001, 0.01);
    lo -= room;
    hi += room;
  }
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const x = (i) => pad.left + (points.length === 1 ? innerW : (i / (points.length - 1)) * innerW);
  const y = (price) => pad.top + (1 - (price - lo) / (hi - lo)) * innerH;
  const coords = points.map((p, i) => `${x(i).toFixed(1)},${y(p.price).toFixed(1)}`);
  const base = (pad.top + innerH).toFixed(1);
  const area = `M${x(0).toFixed(1)},${base} L${coords.join(" L")} L${x(points.length - 1).toFixed(1)},${base} Z`;
  const grid = [hi, (hi + lo) / 2, lo]
    .map((v) => {
      const gy = y(v).toFixed(1);
      return `<line class="gridline" x1="${pad.left}" x2="${width - pad.right}" y1="${gy}" y2="${gy}"/>
        <text class="axis" x="${width - pad.right + 6}" y="${gy}" dy="0.35em">${fmtPrice(+v.toFixed(6))}</text>`;
    })
    .join("");
  const last = points[points.length - 1];
  const times =
    points.length > 1
      ? `<text class="axis" x="${pad.left}" y="${height - 6}">${points[0].time}</text>
         <text class="axis" x="${width - pad.right}" y="${height - 6}" text-anchor="end">${last.time}</text>`
      : `<text class="axis" x="${width - pad.right}" y="${height - 6}" text-anchor="end">${last.time}</text>`;
  box.innerHTML = `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" aria-hidden="true">
    ${grid}
    ${times}
    <path class="area" d="${area}"/>
    <polyline class="line" points="${coords.join(" ")}"/>
    <circle class="dot ${sideClass(last.side)}" cx="${x(points.length - 1).toFixed(1)}" cy="${y(last.price).toFixed(1)}" r="3.5"/>
  </svg>`;
  box.setAttribute("aria-label", `Price chart of the last ${points.length} trades, last ${fmtPrice(last.price)}`);
}
