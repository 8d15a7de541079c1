import { test } from 'node:test';
import assert from 'node:assert/strict';
import { todoActiveAt } from '../src/attention/todo.js';
import { todoFromInfotext, todoInfotext } from '../src/pipeline/todo-infotext.js';
import type { TodoOptions } from '../src/index.js';

const SD15 = [0, 1, 2, 3];
const SDXL = [1, 2];

const record = (fields: [string, string][]): Record<string, string> => Object.fromEntries(fields);

test('written with the A1111 extension\'s keys and value formats (Python floats, depth by resolution level)', () => {
  assert.deepEqual(todoInfotext({ method: 'todo', factor: 2, mode: 'nearest-exact', stopAt: 0.8 }, SD15, [64, 64]), [
    ['ToDo factor', '2.0'],
    ['ToDo max depth', '1'],
    ['ToDo disable after', '0.8'],
  ]);
  // SDXL's first attention level is depth 2; both levels at the same factor is depth 3.
  assert.deepEqual(record(todoInfotext({ method: 'todo', factor: 1.5, mode: 'nearest-exact' }, SDXL, [128, 128]))['ToDo max depth'], '2');
  assert.deepEqual(todoInfotext({ method: 'todo', factor: 2, level2Factor: 2, mode: 'nearest-exact' }, SDXL, [128, 128]).slice(0, 2), [
    ['ToDo factor', '2.0'],
    ['ToDo max depth', '3'],
  ]);
  // 'auto' is written as what it resolved to: SDXL 2048² (latent 256, first attention grid 128) → 2.
  assert.equal(record(todoInfotext({ method: 'todo', factor: 'auto', mode: 'nearest-exact' }, SDXL, [256, 256]))['ToDo factor'], '2.0');
  // What the extension cannot say goes into extra keys.
  assert.deepEqual(record(todoInfotext({ method: 'todo', factor: 3, level2Factor: 2, mode: 'bilinear' }, SD15, [64, 64])), {
    'ToDo factor': '3.0',
    'ToDo max depth': '1',
    'ToDo disable after': '1.0',
    'ToDo level 2 factor': '2.0',
    'ToDo mode': 'bilinear',
  });
});

test('read back: the extension\'s own fields, and ours round-trip', () => {
  assert.deepEqual(todoFromInfotext({ 'ToDo factor': '2.5', 'ToDo max depth': '2', 'ToDo disable after': '0.6' }, SD15), {
    method: 'todo',
    factor: 2.5,
    mode: 'nearest-exact',
    level2Factor: 2.5,
    stopAt: 0.6,
  });
  // SDXL: depth 1 is clamped up to the first attention level, as the extension does.
  assert.equal(todoFromInfotext({ 'ToDo factor': '2.0', 'ToDo max depth': '1' }, SDXL)?.level2Factor, 1);
  assert.equal(todoFromInfotext({ 'ToDo factor': '2.0', 'ToDo max depth': '4' }, SDXL)?.level2Factor, 2);
  assert.equal(todoFromInfotext({ 'ToDo factor': '1.0', 'ToDo max depth': '1' }, SD15), undefined, 'factor 1 = off');
  assert.equal(todoFromInfotext({ Steps: '20' }, SD15), undefined);
  const options: TodoOptions[] = [
    { method: 'todo', factor: 2, mode: 'nearest', level2Factor: 1, stopAt: 0.7 },
    { method: 'todo', factor: 3, mode: 'bilinear', level2Factor: 2, stopAt: 1 },
    { method: 'todo', factor: 1.5, mode: 'nearest-exact', level2Factor: 1.5, stopAt: 1 },
  ];
  for (const levels of [SD15, SDXL]) {
    for (const o of options) assert.deepEqual(todoFromInfotext(record(todoInfotext(o, levels, [128, 128])), levels), o);
  }
});

test('read back: bad values and depths beyond two attention levels are clear errors', () => {
  assert.throws(() => todoFromInfotext({ 'ToDo factor': 'two' }, SD15), /"ToDo factor: two" is not a number/);
  assert.throws(() => todoFromInfotext({ 'ToDo factor': '2.0', 'ToDo max depth': '3' }, SD15), /downsamples 3 attention levels .* at most two .* max depth 2 or less/);
});

test('"disable after" counts steps as the extension does: ToDo for the first int(d · steps) steps', () => {
  const active = (d: number, n: number): number => Array.from({ length: n }, (_, i) => todoActiveAt(d, i, n)).filter(Boolean).length;
  assert.equal(active(0.7, 25), 17); // int(17.5)
  assert.equal(active(0.8, 25), 20);
  assert.equal(active(0.3, 10), 3); // 0.3 · 10 = 3.0000000000000004 in floating point, as in Python
  assert.equal(active(1, 20), 20);
  assert.equal(active(0, 20), 0);
  assert.ok(todoActiveAt(0.5, 0, 4) && todoActiveAt(0.5, 1, 4) && !todoActiveAt(0.5, 2, 4), 'the first steps, not the last');
});
