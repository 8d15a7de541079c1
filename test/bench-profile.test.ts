import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR } from '../src/index.js';
import { profileUNet, profileVAE } from '../src/bench/profile.js';
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

test("bench profile: the VAE's decoder and encoder by block, each block's channels and size named, every counted FLOP on a profiled node", async () => {
  // The built-in VAE: two levels (scale 2), block_out_channels [32, 64].
  const dec = await profileVAE(BUILTIN_MODEL_DIR, 'decoder', [64, 48], {}, { batch: 2, runs: 2 });
  assert.equal(dec.component, 'vae-decoder');
  assert.equal(dec.batch, 2);
  const parts = dec.byPart.map((p) => p.part);
  for (const label of ['decoder.up_blocks.0 (64 ch at 32x24 + upsampler)', 'decoder.up_blocks.1 (32 ch at 64x48)', 'decoder.mid_block (2 ResNets, attention projections)', 'mid_block attention kernel']) {
    assert.ok(parts.includes(label), `${label} not among ${parts.join('; ')}`);
  }
  const enc = await profileVAE(BUILTIN_MODEL_DIR, 'encoder', [64, 48], {}, { runs: 1 });
  assert.ok(enc.byPart.some((p) => p.part === 'encoder.down_blocks.0 (32 ch at 64x48 + downsampler)'), enc.byPart.map((p) => p.part).join('; '));
  for (const r of [dec, enc]) {
    const counted = r.byOp.reduce((a, o) => a + (o.gflop ?? 0), 0);
    assert.ok(r.gflop > 0 && Math.abs(counted - r.gflop) <= 1e-9 * r.gflop, `${r.method}: ${counted} GFLOP on nodes vs ${r.gflop} in the graph`);
    // The upsampler's and downsampler's convolutions count in their block: only conv_in/out and the quant convs are outside.
    const outside = r.byPart.find((p) => p.part.startsWith('conv in/out'))?.ms ?? 0;
    assert.ok(outside < 0.5 * r.nodeMs, `${r.method}: ${outside} of ${r.nodeMs} ms outside the blocks`);
  }
  await assert.rejects(profileVAE(BUILTIN_MODEL_DIR, 'decoder', [63, 48]), /multiples of 2; got 63x48/);
});
