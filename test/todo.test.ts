import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadUNet } from '../src/index.js';
import type { TodoMode } from '../src/index.js';
import { fixture, readTensor, relL2 } from './helpers.js';

const cases: [TodoMode, string][] = [
  ['nearest', 'out_todo_nearest_2'],
  ['avg-pool', 'out_todo_avg_pool_2'],
];

for (const [mode, ref] of cases) {
  test(`unet-320: ToDo factor 2 ${mode} matches the authors' implementation`, async () => {
    const io = fixture('unet-320', 'io.safetensors');
    const unet = await loadUNet(fixture('unet-320'), { attention: { method: 'todo', factor: 2, mode } });
    const out = await unet.forward(readTensor(io, 'sample'), readTensor(io, 'timestep').data[0]!, readTensor(io, 'encoder_hidden_states'));
    const err = relL2(out.data, readTensor(io, ref).data);
    assert.ok(err <= 1e-4, `relative L2 error ${err}`);
    // The reference really differs from dense attention, so matching it means ToDo ran.
    assert.ok(relL2(out.data, readTensor(io, 'out_full').data) > 1e-2);
    await unet.dispose();
  });
}
