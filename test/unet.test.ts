import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadUNet } from '../src/index.js';
import { fixture, readTensor, relL2 } from './helpers.js';

for (const name of ['unet-tiny', 'unet-320']) {
  test(`${name}: UNet forward matches diffusers (out_full)`, async () => {
    const io = fixture(name, 'io.safetensors');
    const unet = await loadUNet(fixture(name));
    const t = readTensor(io, 'timestep').data[0]!;
    const out = await unet.forward(readTensor(io, 'sample'), t, readTensor(io, 'encoder_hidden_states'));
    const ref = readTensor(io, 'out_full');
    assert.deepEqual(out.dims, ref.dims);
    const err = relL2(out.data, ref.data);
    assert.ok(err <= 1e-4, `relative L2 error ${err}`);
    await unet.dispose();
  });
}
