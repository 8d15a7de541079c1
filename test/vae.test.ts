import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadVAE } from '../src/index.js';
import { fixture, readTensor, relL2 } from './helpers.js';

test('vae-tiny: decode matches diffusers', async () => {
  const io = fixture('vae-tiny', 'io.safetensors');
  const vae = await loadVAE(fixture('vae-tiny'));
  const out = await vae.decode(readTensor(io, 'latents'));
  const ref = readTensor(io, 'out_decoded');
  assert.deepEqual(out.dims, ref.dims);
  const err = relL2(out.data, ref.data);
  assert.ok(err <= 1e-4, `relative L2 error ${err}`);
  await vae.dispose();
});

test('vae-tiny: encode gives latents of the right shape that decode back to an image of the input size', async () => {
  const vae = await loadVAE(fixture('vae-tiny', 'vae'));
  const image = { data: Float32Array.from({ length: 3 * 32 * 32 }, (_, i) => Math.sin(i / 7)), dims: [1, 3, 32, 32] };
  const z = await vae.encode(image);
  assert.deepEqual(z.dims, [1, 4, 16, 16]);
  assert.ok(z.data.every(Number.isFinite));
  const back = await vae.decode(z);
  assert.deepEqual(back.dims, [1, 3, 32, 32]);
  await assert.rejects(vae.encode({ data: new Float32Array(3 * 31 * 31), dims: [1, 3, 31, 31] }), /multiples of 2/);
  await vae.dispose();
});
