// A candlestick chart (OHLC with volume bars) drawn as SVG sized to its box, and the folding of
// live trades into the newest candles.

import { fmtPrice, fmtTime } from "./format.js";

/** The chart's intervals: their length in seconds and the API's CandleInterval. */
export const INTERVALS = { "1s": 1, "1m": 60, "5m": 300, "1h": 3600 };
export const CANDLE_INTERVALS = { "1s": "ONE_SECOND", "1m": "ONE_MINUTE", "5m": "FIVE_MINUTE", "1h": "ONE_HOUR" };
const SLOT = 9; // px per candle
const MIN_SLOTS = 12;

/** A candle from the API ({start, open, high, low, close, volume, tradeCount}, prices as
 * strings); `count` orders two states of one candle (it only grows). */
export function candleOf(node) {
  const start = typeof node.start === "number" ? node.start * 1000 : Date.parse(node.start);
  return {
    start,
    open: node.open,
    high: node.high,
    low: node.low,
    close: node.close,
    volume: Number(node.volume),
    count: Number(node.tradeCount ?? 0),
  };
}

function label(start, seconds) {
  const time = fmtTime(new Date(start));
  return seconds >= 60 ? time.slice(0, 5) : time;
}

/** candles: oldest first; seconds: the interval, for the labels. */
export function drawCandles(box, candles, seconds) {
  const width = Math.max(160, box.clientWidth);
  const height = Math.max(120, box.clientHeight);
  box.dataset.candles = String(candles.length);
  if (!candles.length) {
    box.innerHTML = `<p class="chart-empty muted small">No trades in this period yet: place two crossing orders.</p>`;
    return;
  }
  const pad = { left: 6, right: 62, top: 10, bottom: 22 };
  const volumeH = Math.round((height - pad.top - pad.bottom) * 0.18);
  const innerW = width - pad.left - pad.right;
  const priceH = height - pad.top - pad.bottom - volumeH - 6;
  const slots = Math.max(MIN_SLOTS, Math.floor(innerW / SLOT));
  const shown = candles.slice(-slots);
  let lo = Math.min(...shown.map((c) => Number(c.low)));
  let hi = Math.max(...shown.map((c) => Number(c.high)));
  if (hi === lo) {
    const room = Math.max(Math.abs(lo) * 0.001, 0.01);
    lo -= room;
    hi += room;
  }
  const maxVolume = Math.max(...shown.map((c) => c.volume));
  const step = innerW / slots;
  const bodyW = Math.max(2, Math.min(12, step * 0.7));
  // The newest candle sits at the right edge; older ones extend to the left.
  const x = (i) => pad.left + innerW - (shown.length - i - 0.5) * step;
  const y = (price) => pad.top + (1 - (Number(price) - lo) / (hi - lo)) * priceH;
  const base = height - pad.bottom;
  const f = (n) => n.toFixed(1);

  const last = shown[shown.length - 1];
  const lastY = y(last.close);
  const grid = [hi, (hi + lo) / 2, lo]
    .map((v) => {
      const gy = f(y(v));
      // The last close has its own label; a grid label right beside it would overprint it.
      const text =
        Math.abs(y(v) - lastY) < 12
          ? ""
          : `<text class="axis" x="${width - pad.right + 6}" y="${gy}" dy="0.35em">${fmtPrice(+v.toFixed(6))}</text>`;
      return `<line class="gridline" x1="${pad.left}" x2="${width - pad.right}" y1="${gy}" y2="${gy}"/>${text}`;
    })
    .join("");
  const bodies = shown
    .map((c, i) => {
      const dir = Number(c.close) > Number(c.open) ? "up" : Number(c.close) < Number(c.open) ? "down" : "flat";
      const top = y(Math.max(Number(c.open), Number(c.close)));
      const bottom = y(Math.min(Number(c.open), Number(c.close)));
      const vh = maxVolume ? (c.volume / maxVolume) * volumeH : 0;
      const cx = x(i);
      return `<g class="candle ${dir}" data-start="${new Date(c.start).toISOString()}" data-open="${c.open}" data-high="${c.high}" data-low="${c.low}" data-close="${c.close}" data-volume="${c.volume}">
        <title>${label(c.start, seconds)} O ${fmtPrice(c.open)} H ${fmtPrice(c.high)} L ${fmtPrice(c.low)} C ${fmtPrice(c.close)} · vol ${c.volume}</title>
        <line class="wick" x1="${f(cx)}" x2="${f(cx)}" y1="${f(y(c.high))}" y2="${f(y(c.low))}"/>
        <rect class="body" x="${f(cx - bodyW / 2)}" y="${f(top)}" width="${f(bodyW)}" height="${f(Math.max(2, bottom - top))}"/>
        <rect class="vol" x="${f(cx - bodyW / 2)}" y="${f(base - vh)}" width="${f(bodyW)}" height="${f(Math.max(0.5, vh))}"/>
      </g>`;
    })
    .join("");
  const firstX = x(0) - bodyW / 2;
  const lastLabel = `<text class="axis" x="${width - pad.right}" y="${height - 5}" text-anchor="end">${label(last.start, seconds)}</text>`;
  // The oldest candle's time too, when it does not run into the newest's.
  const times =
    width - pad.right - firstX > 110
      ? `<text class="axis" x="${f(firstX)}" y="${height - 5}">${label(shown[0].start, seconds)}</text>${lastLabel}`
      : lastLabel;
  box.innerHTML = `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" aria-hidden="true">
    ${grid}
    <line class="last-line" x1="${pad.left}" x2="${width - pad.right}" y1="${f(lastY)}" y2="${f(lastY)}"/>
    <text class="axis last-label" x="${width - pad.right + 6}" y="${f(lastY)}" dy="0.35em">${fmtPrice(last.close)}</text>
    ${bodies}
    ${times}
  </svg>`;
  box.setAttribute(
    "aria-label",
    `Candlestick chart, ${shown.length} candles, last close ${fmtPrice(last.close)}`,
  );
}
