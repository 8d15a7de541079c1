import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTextEncoder, SafetensorsFile } from '../src/index.js';
import { fixture, readTensor, relL2 } from './helpers.js';

test('clip-text-tiny: last hidden state matches transformers', async () => {
  const io = fixture('clip-text-tiny', 'io.safetensors');
  const ids = SafetensorsFile.open(io).readInt64('input_ids');
  const te = await loadTextEncoder(fixture('clip-text-tiny'));
  const out = await te.forward({ data: Int32Array.from(ids, Number), dims: [2, 77] });
  const ref = readTensor(io, 'out_last_hidden_state');
  assert.deepEqual(out.dims, ref.dims);
  const err = relL2(out.data, ref.data);
  assert.ok(err <= 1e-4, `relative L2 error ${err}`);
  // Same answer from int64 ids.
  const out64 = await te.forward({ data: ids, dims: [2, 77] });
  assert.ok(relL2(out64.data, ref.data) <= 1e-4);
  // Clip skip 2 stops one layer early: a different result of the same shape.
  const skipped = await te.forward({ data: ids, dims: [2, 77] }, { clipSkip: 2 });
  assert.deepEqual(skipped.dims, ref.dims);
  assert.ok(relL2(skipped.data, ref.data) > 1e-3);
  await assert.rejects(te.forward({ data: Int32Array.of(1, 99999), dims: [1, 2] }), /outside the vocabulary/);
  await assert.rejects(te.forward({ data: ids, dims: [2, 77] }, { clipSkip: 5 }), /clip skip/);
  await te.dispose();
});
