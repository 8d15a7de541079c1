import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lineChartSvg, type LineChartSpec } from '../src/bench/chart.js';

/**
 * A small well-formedness check: tags balance, attribute values are quoted, and text has no bare
 * '<' or '&' outside the five XML entities.
 */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt === -1 ? xml.length : lt);
    assert.doesNotMatch(text, /&(?!(amp|lt|gt|quot|apos);)/, `bare & in ${JSON.stringify(text)}`);
    assert.doesNotMatch(text, />/, `bare > in ${JSON.stringify(text)}`);
    if (lt === -1) break;
    tag.lastIndex = lt;
    const m = tag.exec(xml);
    assert.ok(m, `malformed tag at ${JSON.stringify(xml.slice(lt, lt + 60))}`);
    const [whole, close, name, , selfClose] = m;
    if (close) assert.equal(stack.pop(), name, `unbalanced </${name}>`);
    else if (!selfClose) stack.push(name!);
    i = lt + whole.length;
  }
  assert.deepEqual(stack, [], 'unclosed tags');
}

/** The plot area's rect, read from the SVG. */
function plotRect(svg: string): { x: number; y: number; w: number; h: number } {
  const m = /<rect class="plot" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/.exec(svg);
  assert.ok(m, 'no plot rect');
  return { x: Number(m[1]), y: Number(m[2]), w: Number(m[3]), h: Number(m[4]) };
}

const polylines = (svg: string): [number, number][][] =>
  [...svg.matchAll(/<polyline[^>]* points="([^"]*)"/g)].map((m) => m[1]!.split(' ').map((p) => p.split(',').map(Number) as [number, number]));

const spec: LineChartSpec = {
  title: 'Speed <ToDo> & "dense"',
  xLabel: 'resolution (px)',
  yLabel: "it/s (higher's better)",
  series: [
    { name: 'dense', points: [[512, 0], [1024, 50], [2048, 100]] },
    { name: 'ToDo 2x <fast> & co', points: [[512, 20], [1024, 70]] },
  ],
  xTicks: [512, 1024, 1536, 2048],
};

test('chart is well-formed XML with escaped text, one polyline per series and the legend names', () => {
  const svg = lineChartSvg(spec);
  assertWellFormed(svg);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.includes('Speed &lt;ToDo&gt; &amp; &quot;dense&quot;'));
  assert.ok(svg.includes('it/s (higher&apos;s better)'));
  assert.ok(svg.includes('>dense<'));
  assert.ok(svg.includes('ToDo 2x &lt;fast&gt; &amp; co'));
  assert.equal(polylines(svg).length, 2);
  assert.equal([...svg.matchAll(/<circle /g)].length, 5 + 2); // markers plus one per legend entry
  for (const t of ['512', '1024', '1536', '2048']) assert.ok(svg.includes(`>${t}</text>`), `x tick ${t}`);
});

test('points map linearly onto the plot area', () => {
  const svg = lineChartSvg(spec);
  const r = plotRect(svg);
  const [dense, todo] = polylines(svg);
  // x spans the ticks 512..2048; y 0..100 is already round (step 20), so the domain is exactly 0..100.
  assert.deepEqual(dense![0], [r.x, r.y + r.h]);
  assert.deepEqual(dense![2], [r.x + r.w, r.y]);
  // (1024, 50): a third of the way across, half way up.
  const [x, y] = dense![1]!;
  assert.ok(Math.abs(x - (r.x + r.w / 3)) <= 0.01, `x ${x}`);
  assert.ok(Math.abs(y - (r.y + r.h / 2)) <= 0.01, `y ${y}`);
  // (512, 20): a fifth of the way up.
  assert.ok(Math.abs(todo![0]![1] - (r.y + r.h * 0.8)) <= 0.01);
});

test('log y axis: decades are evenly spaced', () => {
  const svg = lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', logY: true, series: [{ name: 's', points: [[0, 1], [1, 10], [2, 1000]] }] });
  assertWellFormed(svg);
  const r = plotRect(svg);
  const [line] = polylines(svg);
  // Domain 10^0 .. 10^3: y = 1 at the bottom, 10 a third up, 1000 at the top.
  assert.equal(line![0]![1], r.y + r.h);
  assert.ok(Math.abs(line![1]![1] - (r.y + (r.h * 2) / 3)) <= 0.01);
  assert.equal(line![2]![1], r.y);
  for (const t of ['1', '10', '100', '1000']) assert.ok(svg.includes(`>${t}</text>`), `y tick ${t}`);
  assert.throws(() => lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', logY: true, series: [{ name: 's', points: [[0, 0]] }] }), /every y > 0/);
});

test('no points or non-finite points are refused', () => {
  assert.throws(() => lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [] }] }), /no points/);
  assert.throws(() => lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [[0, NaN]] }] }), /finite/);
});
