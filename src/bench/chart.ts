/**
 * Line charts for the benchmark reports (time or speed-up against resolution, one line per
 * attention variant) as self-contained SVG text: no plotting library, and the file opens in any
 * browser or Markdown viewer.
 */

export interface ChartSeries {
  name: string;
  /** [x, y] pairs, joined in the order given. */
  points: [number, number][];
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: ChartSeries[];
  /** Logarithmic y axis (all y must be > 0), ticks at powers of 10. */
  logY?: boolean;
  /** x tick positions, e.g. the resolutions measured; default evenly spaced round numbers. */
  xTicks?: number[];
}

const MIN_WIDTH = 720;
const HEIGHT = 440;
/** Rough width of a 12px sans-serif character, to widen the chart for long legend names. */
const CHAR_W = 7;
// Plot area: room on the left for y tick labels and the y label, on the right for the legend.
const PLOT = { left: 80, top: 50, width: 440, height: 320 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const escapeXml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

/** Short tick label: up to 6 significant digits, exponent form for very large or small values. */
function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e7 || a < 1e-3)) return v.toExponential(2).replace('e+', 'e');
  return String(Number(v.toPrecision(6)));
}

/** Round tick step (1, 2 or 5 times a power of 10) giving about five intervals over span. */
function niceStep(span: number): number {
  const raw = span / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

interface Axis {
  /** Domain in axis units (log10 of the value on a log axis). */
  lo: number;
  hi: number;
  ticks: number[];
  toUnit: (v: number) => number;
}

/** Linear axis over round numbers covering [min, max]; a single value gets a unit-wide range around it. */
function linearAxis(min: number, max: number): Axis {
  if (min === max) [min, max] = [min - (Math.abs(min) || 1) / 2, max + (Math.abs(max) || 1) / 2];
  const step = niceStep(max - min);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  // Ticks as integer multiples of step, so 0.1 + 0.2-style drift never shows in a label.
  for (let k = Math.round(lo / step); k <= Math.round(hi / step); k++) ticks.push(Number((k * step).toPrecision(12)));
  return { lo, hi, ticks, toUnit: (v) => v };
}

/** Log axis over whole decades covering [min, max]; within a single decade, 2x and 5x ticks too. */
function logAxis(min: number, max: number): Axis {
  let lo = Math.floor(Math.log10(min));
  let hi = Math.ceil(Math.log10(max));
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) {
    for (const m of hi - lo <= 1 ? [1, 2, 5] : [1]) {
      if (e === hi && m > 1) break;
      ticks.push(Number((m * 10 ** e).toPrecision(12)));
    }
  }
  return { lo, hi, ticks, toUnit: Math.log10 };
}

/**
 * An SVG line chart: frame, ticks with gridlines, axis labels, title, one polyline with circle
 * markers per series, and a legend to the right of the plot. The plot area is the rect with class
 * "plot"; x maps linearly onto its width and y (or log10 y) onto its height, bottom to top.
 */
export function lineChartSvg(spec: LineChartSpec): string {
  const points = spec.series.flatMap((s) => s.points);
  if (points.length === 0) throw new Error('lineChartSvg: no points to plot');
  if (points.some(([x, y]) => !Number.isFinite(x) || !Number.isFinite(y))) throw new Error('lineChartSvg: points must be finite numbers');
  if (spec.logY && points.some(([, y]) => y <= 0)) throw new Error('lineChartSvg: a log y axis needs every y > 0');
  const xs = [...points.map(([x]) => x), ...(spec.xTicks ?? [])];
  const ys = points.map(([, y]) => y);

  const xAxis: Axis = spec.xTicks?.length
    ? { lo: Math.min(...xs), hi: Math.max(...xs), ticks: spec.xTicks, toUnit: (v) => v }
    : linearAxis(Math.min(...xs), Math.max(...xs));
  if (xAxis.lo === xAxis.hi) [xAxis.lo, xAxis.hi] = [xAxis.lo - 1, xAxis.hi + 1];
  const yAxis = spec.logY ? logAxis(Math.min(...ys), Math.max(...ys)) : linearAxis(Math.min(...ys), Math.max(...ys));

  const px = (x: number): number => PLOT.left + ((xAxis.toUnit(x) - xAxis.lo) / (xAxis.hi - xAxis.lo)) * PLOT.width;
  const py = (y: number): number => PLOT.top + PLOT.height - ((yAxis.toUnit(y) - yAxis.lo) / (yAxis.hi - yAxis.lo)) * PLOT.height;
  const n = (v: number): string => String(Math.round(v * 100) / 100);
  const bottom = PLOT.top + PLOT.height;
  const right = PLOT.left + PLOT.width;
  const width = Math.max(MIN_WIDTH, right + 56 + CHAR_W * Math.max(0, ...spec.series.map((s) => s.name.length)));

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${HEIGHT}" viewBox="0 0 ${width} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${PLOT.left + PLOT.width / 2}" y="28" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(spec.title)}</text>`,
  ];
  for (const t of xAxis.ticks) {
    const x = n(px(t));
    out.push(
      `<line x1="${x}" y1="${PLOT.top}" x2="${x}" y2="${bottom}" stroke="#e0e0e0"/>`,
      `<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 5}" stroke="black"/>`,
      `<text x="${x}" y="${bottom + 18}" text-anchor="middle">${escapeXml(formatTick(t))}</text>`,
    );
  }
  for (const t of yAxis.ticks) {
    const y = n(py(t));
    out.push(
      `<line x1="${PLOT.left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e0e0e0"/>`,
      `<line x1="${PLOT.left - 5}" y1="${y}" x2="${PLOT.left}" y2="${y}" stroke="black"/>`,
      `<text x="${PLOT.left - 8}" y="${y}" text-anchor="end" dy="0.35em">${escapeXml(formatTick(t))}</text>`,
    );
  }
  out.push(
    `<rect class="plot" x="${PLOT.left}" y="${PLOT.top}" width="${PLOT.width}" height="${PLOT.height}" fill="none" stroke="black"/>`,
    `<text x="${PLOT.left + PLOT.width / 2}" y="${bottom + 42}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`,
    `<text transform="translate(20 ${PLOT.top + PLOT.height / 2}) rotate(-90)" text-anchor="middle">${escapeXml(spec.yLabel)}</text>`,
  );
  spec.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const name = escapeXml(s.name);
    out.push(
      `<g class="series" stroke="${color}" fill="${color}"><title>${name}</title>`,
      `<polyline fill="none" stroke-width="2" points="${s.points.map(([x, y]) => `${n(px(x))},${n(py(y))}`).join(' ')}"/>`,
      ...s.points.map(([x, y]) => `<circle cx="${n(px(x))}" cy="${n(py(y))}" r="3.5"/>`),
      '</g>',
    );
    const ly = PLOT.top + 10 + i * 20;
    out.push(
      `<line x1="${right + 16}" y1="${ly}" x2="${right + 40}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<circle cx="${right + 28}" cy="${ly}" r="3.5" fill="${color}"/>`,
      `<text x="${right + 46}" y="${ly}" dy="0.35em">${name}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
