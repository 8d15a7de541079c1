import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR } from '../src/index.js';
import { profileUNet } from '../src/bench/profile.js';
import { parseMethod } from '../src/bench/speed.js';
import { profileTable } from '../src/bench/report.js';
import { writeRandomModel } from '../src/models/random-model.js';

test('bench profile: the last run by operator and U-Net part; every counted FLOP lands on a profiled MatMul, Conv or attention node', async () => {
  for (const m of ['dense', 'todo-2'].map(parseMethod)) {
    const r = await profileUNet(BUILTIN_MODEL_DIR, [64, 64], m.label, m.attention, {}, { batch: 2, runs: 2 });
    assert.equal(r.batch, 2);
    assert.ok(r.runMs > 0 && r.nodeMs > 0 && r.nodeMs <= r.runMs * 1.5, `${r.nodeMs} ms of nodes in a ${r.runMs} ms run`);
    const counted = r.byOp.reduce((a, o) => a + (o.gflop ?? 0), 0);
    assert.ok(Math.abs(counted - r.gflop) <= 1e-9 * r.gflop, `${m.label}: ${counted} GFLOP on nodes vs ${r.gflop} in the graph`);
    const conv = r.byOp.find((o) => o.op === 'Conv')!;
    assert.ok(conv.gflop! > 0 && Math.abs(conv.gflopPerS! - conv.gflop! / (conv.ms / 1000)) < 1e-6 * conv.gflopPerS!);
    assert.ok(Math.abs(r.gflopPerS - r.gflop / (r.runMs / 1000)) < 1e-6 * r.gflopPerS);
    assert.ok(r.byOp.some((o) => o.op === 'InstanceNormalization' && o.gflop === undefined), 'operators without counted FLOPs have no rate');
    assert.match(profileTable([r]), /GFLOP\/s/);
  }
});

test('bench profile: an SDXL U-Net, its added inputs (pooled text, time ids) fed', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'todo-sd-profile-')), 'sdxl');
  writeRandomModel(dir, 'sdxl-tiny');
  const r = await profileUNet(dir, [64, 64], 'dense', { method: 'dense' }, {}, { batch: 1, runs: 1 });
  assert.ok(r.gflop > 0 && r.byOp.some((o) => o.op === 'MultiHeadAttention' && o.gflop! > 0));
});
