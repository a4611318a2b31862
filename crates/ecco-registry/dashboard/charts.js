// Small charts drawn as inline SVG: no library. The SVG only draws the bars
// (it stretches to any width); labels are HTML so that they stay readable on a
// phone, and each chart carries a text summary for screen readers.

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function span(className, text) {
  const node = document.createElement('span');
  node.className = className;
  node.textContent = text;
  return node;
}

/** A time label for a bucket start, coarse for long windows. */
export function timeLabel(ms, spanMs) {
  const date = new Date(ms);
  if (spanMs > 2 * 86_400_000) {
    return date.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }
  return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/**
 * A bar chart of `points` ({t_ms, value}) in buckets of `bucketMs`.
 * `describe(total, peak, peakAt)` gives the text alternative;
 * `measure(point)` the bar height on [0, max] (default point.value);
 * `max` fixes the scale (default: the largest value).
 */
export function barChart({ points, bucketMs, describe, tip, measure = (p) => p.value, max, className = '' }) {
  const values = points.map(measure);
  const peak = values.reduce((a, b) => Math.max(a, b), 0);
  const scale = max ?? Math.max(peak, 1);
  const total = values.reduce((a, b) => a + b, 0);
  const peakIndex = values.indexOf(peak);
  const spanMs = points.length * bucketMs;

  const wrap = document.createElement('div');
  wrap.className = `chart ${className}`.trim();
  const plot = document.createElement('div');
  plot.className = 'plot';
  plot.append(span('ymax', max === undefined ? `max ${formatCount(peak)}` : ''));

  const n = Math.max(points.length, 1);
  const chart = svg('svg', {
    viewBox: `0 0 ${n * 10} 100`,
    preserveAspectRatio: 'none',
    role: 'img',
    focusable: 'false',
  });
  const label = describe(total, peak, points[peakIndex]?.t_ms);
  chart.setAttribute('aria-label', label);
  const title = svg('title');
  title.textContent = label;
  chart.append(title);
  chart.append(svg('line', { x1: 0, y1: 99.5, x2: n * 10, y2: 99.5, class: 'baseline' }));
  points.forEach((point, i) => {
    const value = values[i];
    const height = value > 0 ? Math.max((value / scale) * 96, 2) : 0;
    const bar = svg('rect', {
      x: i * 10 + 1,
      y: 100 - height,
      width: 8,
      height,
      class: value > 0 ? 'bar' : 'bar empty',
    });
    const hover = svg('title');
    hover.textContent = tip ? tip(point) : `${timeLabel(point.t_ms, spanMs)}: ${formatCount(value)}`;
    bar.append(hover);
    chart.append(bar);
  });
  plot.append(chart);
  wrap.append(plot);

  const axis = document.createElement('div');
  axis.className = 'xaxis';
  axis.setAttribute('aria-hidden', 'true');
  if (points.length > 0) {
    axis.append(span('', timeLabel(points[0].t_ms, spanMs)));
    axis.append(span('', timeLabel(points[Math.floor(points.length / 2)].t_ms, spanMs)));
    axis.append(span('', 'now'));
  }
  wrap.append(axis);
  return wrap;
}

/** A horizontal bar as wide as `share` of its track, for top lists. */
export function shareBar(share, label) {
  const track = svg('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', class: 'share', 'aria-hidden': 'true', focusable: 'false' });
  track.append(svg('rect', { x: 0, y: 0, width: 100, height: 10, class: 'track' }));
  track.append(svg('rect', { x: 0, y: 0, width: Math.max(0, Math.min(1, share)) * 100, height: 10, class: 'fill' }));
  if (label) {
    const title = svg('title');
    title.textContent = label;
    track.append(title);
  }
  return track;
}

export function formatCount(n) {
  return Number.isInteger(n) ? n.toLocaleString() : n.toFixed(1);
}
