import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RgbImage } from '../src/io/png.js';
import { imageGrid } from '../src/bench/grid.js';

function image(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * 3);
  return { width, height, data };
}

const at = (img: RgbImage, x: number, y: number): number[] => [...img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3)];

/** Whether any pixel of the box [x0, x1) x [y0, y1) differs from the colour. */
function anyNot(img: RgbImage, x0: number, y0: number, x1: number, y1: number, color: number[]): boolean {
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (at(img, x, y).some((v, c) => v !== color[c])) return true;
  return false;
}

const white = [255, 255, 255];

test('unlabelled grid: size and pixel placement with gaps', () => {
  // Each pixel encodes its own coordinates and its cell, so misplacement shows.
  const cell = (id: number): RgbImage => image(3, 2, (x, y) => [id, x, y]);
  const g = imageGrid([[cell(10), cell(11)], [cell(20), cell(21)]], { gap: 1 });
  // 1 + 3 + 1 + 3 + 1 wide, 1 + 2 + 1 + 2 + 1 high.
  assert.equal(g.width, 9);
  assert.equal(g.height, 7);
  assert.equal(g.data.length, 9 * 7 * 3);
  assert.deepEqual(at(g, 0, 0), white);
  assert.deepEqual(at(g, 1, 1), [10, 0, 0]);
  assert.deepEqual(at(g, 3, 2), [10, 2, 1]);
  assert.deepEqual(at(g, 4, 1), white); // gap column
  assert.deepEqual(at(g, 5, 1), [11, 0, 0]);
  assert.deepEqual(at(g, 7, 5), [21, 2, 1]);
  assert.deepEqual(at(g, 1, 4), [20, 0, 0]);
  assert.deepEqual(at(g, 8, 6), white);
});

test('scale upscales by nearest neighbour; background fills around smaller cells', () => {
  const big = image(4, 4, () => [1, 2, 3]);
  const small = image(2, 1, (x) => [x === 0 ? 100 : 200, 0, 0]);
  const g = imageGrid([[big], [small]], { scale: 2, gap: 0, background: [9, 9, 9] });
  // Column width: 4 * 2 = 8; rows 8 and 2 tall.
  assert.equal(g.width, 8);
  assert.equal(g.height, 10);
  // The 4x2 scaled small image is centred in the 8-wide cell: x 2..5, y 8..9.
  assert.deepEqual(at(g, 1, 8), [9, 9, 9]);
  for (const [x, y] of [[2, 8], [3, 8], [2, 9], [3, 9]]) assert.deepEqual(at(g, x!, y!), [100, 0, 0]);
  for (const [x, y] of [[4, 8], [5, 9]]) assert.deepEqual(at(g, x!, y!), [200, 0, 0]);
  assert.deepEqual(at(g, 6, 9), [9, 9, 9]);
  assert.deepEqual(at(g, 7, 7), [1, 2, 3]);
});

test('labels: room above columns and left of rows, ink only where there is text', () => {
  const black = image(20, 20, () => [0, 0, 0]);
  const g = imageGrid([[black, black], [black]], { rowLabels: ['seed 1', 'x'], colLabels: ['dense', ''], gap: 2, textScale: 1 });
  // Row labels: 'seed 1' is 6 glyphs, 6 * 6 - 1 = 35 px; column labels are 7 px tall.
  const left = 2 + 35 + 2;
  const top = 2 + 7 + 2;
  assert.equal(g.width, left + 20 + 2 + 20 + 2);
  assert.equal(g.height, top + 20 + 2 + 20 + 2);
  assert.deepEqual(at(g, left, top), [0, 0, 0]);
  assert.deepEqual(at(g, left + 22, top), [0, 0, 0]);
  // Missing cell (row 2, column 2) is background.
  assert.equal(anyNot(g, left + 22, top + 22, left + 42, top + 42, white), false);
  // 'dense' (29 px) is wider than its 20 px column: drawn from the column's left edge, cut at its right, y 2..8.
  assert.equal(anyNot(g, left, 2, left + 20, 9, white), true);
  // Nothing spills into the gap, and the empty second label leaves its strip blank.
  assert.equal(anyNot(g, left + 20, 0, left + 42, top, white), false);
  // Row label ink in the left margin next to each row, none in the gaps above and between.
  assert.equal(anyNot(g, 0, top, left, top + 20, white), true);
  assert.equal(anyNot(g, 0, top + 22, left, top + 42, white), true);
  assert.equal(anyNot(g, 0, 0, left, top, white), false);
  assert.equal(anyNot(g, 0, top + 20, left, top + 22, white), false);
});

test('glyph pixels: "-" is one solid row, "." a 2x2 block, and text is black on light, white on dark', () => {
  const px = image(1, 1, () => [128, 0, 0]);
  // Label row: the row is 7 px tall (the label), starting at y = 1 with gap 1.
  const dash = imageGrid([[px]], { rowLabels: ['-'], gap: 1, textScale: 1 });
  for (let y = 0; y < 7; y++) {
    for (let x = 0; x < 5; x++) assert.deepEqual(at(dash, 1 + x, 1 + y), y === 3 ? [0, 0, 0] : white, `pixel ${x},${y}`);
  }
  const dot = imageGrid([[px]], { rowLabels: ['.'], gap: 1, textScale: 2, background: [0, 0, 40] });
  const ink: [number, number][] = [];
  for (let y = 0; y < 14; y++) for (let x = 0; x < 10; x++) if (at(dot, 1 + x, 1 + y)[0] === 255) ink.push([x, y]);
  // Glyph rows 5-6, columns 1-2, at double size.
  const expected: [number, number][] = [];
  for (let y = 10; y < 14; y++) for (let x = 2; x < 6; x++) expected.push([x, y]);
  assert.deepEqual(ink, expected);
  assert.deepEqual(at(dot, 3, 11), white);
});

test('bad arguments are refused', () => {
  const px = image(1, 1, () => [0, 0, 0]);
  assert.throws(() => imageGrid([]), /no images/);
  assert.throws(() => imageGrid([[px]], { rowLabels: ['a', 'b'] }), /2 row labels for 1 rows/);
  assert.throws(() => imageGrid([[px, px]], { colLabels: ['a'] }), /1 column labels for 2 columns/);
  assert.throws(() => imageGrid([[px]], { scale: 1.5 }), /scale must be a positive integer/);
  assert.throws(() => imageGrid([[{ width: 2, height: 2, data: new Uint8Array(3) }]]), /needs 12 bytes/);
});
