import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PassInfo } from '../src/index.js';
import { parseDeepCacheOption } from '../src/cli/deepcache-option.js';
import { runCli } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-deepcache-cli-'));
const cli = (...args: string[]): ReturnType<typeof runCli> => runCli(root, ...args);
const base = ['generate', '--prompt', 'a red barn', '--width', '32', '--height', '32', '--steps', '4', '--seed', '2'];

test('--deepcache N,layer,block, --deepcache-start, --hires-deepcache, --ngms: --json passes, PNG parameters, --from-png gives the same bytes', () => {
  const a = join(root, 'a.png');
  const r = cli(...base, '--sampler', 'ddim', '--deepcache', '2,1,0', '--deepcache-start', '0.25', '--ngms', '3', '--ngms-all-steps', '--hires-scale', '2', '--hires-deepcache', '3', '--out', a, '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { passes: PassInfo[]; sMinUncond: number; sMinUncondAll: boolean; parameters: string };
  assert.deepEqual(s.passes.map((p) => p.deepcache), [
    { interval: 2, layer: 1, block: 0, start: 0.25 },
    { interval: 3, layer: 0, block: 0, start: 0.25 },
  ]);
  // 4 steps: step 0 (start) and 2 whole; the second pass's 2 steps: the first whole.
  assert.deepEqual(s.passes.map((p) => [p.evaluations.full, p.evaluations.shallow]), [[2, 2], [1, 1]]);
  assert.deepEqual([s.sMinUncond, s.sMinUncondAll], [3, true]);
  assert.match(s.parameters, /DeepCache pass: both passes, DeepCache interval: 2, DeepCache layer: 1, DeepCache start: 0\.25, Hires DeepCache interval: 3, Hires DeepCache layer: 0, Hires DeepCache start: 0\.25, NGMS: 3, NGMS all steps: True/);
  const b = join(root, 'b.png');
  const again = cli('generate', '--from-png', a, '--out', b);
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /not applied/);
  assert.deepEqual(readFileSync(b), readFileSync(a));
  // A flag typed over the PNG wins; --deepcache alone sets both passes again.
  const c = join(root, 'c.png');
  const over = cli('generate', '--from-png', a, '--deepcache', 'off', '--out', c, '--json');
  assert.equal(over.code, 0, over.stderr);
  assert.deepEqual((JSON.parse(over.stdout) as { passes: PassInfo[] }).passes.map((p) => p.deepcache), [undefined, undefined]);
});

test('bad DeepCache and NGMS flags exit non-zero, naming the valid values', () => {
  const cases: [string, RegExp][] = [
    ['0', /--deepcache: the interval must be at least 1/],
    ['3,1', /--deepcache is off, an interval N or N,layer,block/],
    ['x', /--deepcache is off, an interval N or N,layer,block/],
  ];
  for (const [v, message] of cases) assert.throws(() => parseDeepCacheOption('--deepcache')(v), message);
  assert.deepEqual(parseDeepCacheOption('--deepcache')('3,1,2'), { interval: 3, layer: 1, block: 2 });
  const format = cli(...base, '--deepcache', '0', '--out', join(root, 'bad.png'));
  assert.notEqual(format.code, 0);
  assert.match(format.stderr, /--deepcache: the interval must be at least 1/);
  // The cache point is checked against the model's U-Net.
  const range = cli(...base, '--deepcache', '3,0,4', '--ngms', '2', '--out', join(root, 'bad.png'));
  assert.equal(range.code, 1);
  assert.match(range.stderr, /DeepCache block 4 is not a block of this U-Net: use 0 … 1/);
  const ngms = cli(...base, '--ngms', '-1', '--out', join(root, 'bad.png'));
  assert.notEqual(ngms.code, 0);
  assert.match(ngms.stderr, /--ngms must be a number from 0 to 1000/);
});
