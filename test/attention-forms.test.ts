import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BUILTIN_MODEL_DIR, loadUNet } from '../src/index.js';
import { CHUNK_MAP_BYTES, checkAttentionForm, chooseAttentionForm, chunkSize } from '../src/attention/forms.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { serializeModel } from '../src/graph/serialize.js';
import { createSession, ort } from '../src/runtime/session.js';
import { relL2 } from './helpers.js';

const todo2 = { batch: 2, queries: 16384, keys: 4096, heads: 8, elementBytes: 2 };

test('the selector: MultiHeadAttention on the CPU and for dense shapes, chunked for ToDo shapes on a GPU', () => {
  assert.deepEqual(chooseAttentionForm({ ...todo2, provider: 'cpu' }), { form: 'mha' });
  assert.deepEqual(chooseAttentionForm({ ...todo2, keys: 16384, provider: 'webgpu' }), { form: 'mha' });
  const chunk = CHUNK_MAP_BYTES / (2 * 8 * 4096 * 2);
  assert.deepEqual(chooseAttentionForm({ ...todo2, provider: 'webgpu' }), { form: 'chunked', chunk });
  assert.deepEqual(chooseAttentionForm({ ...todo2, provider: 'cuda' }), { form: 'chunked', chunk });
  // 2048² dense keys with few queries per chunk: the map does not fit a worthwhile chunk.
  assert.deepEqual(chooseAttentionForm({ ...todo2, queries: 262144, keys: 65536, provider: 'webgpu' }), { form: 'mha' });
  assert.deepEqual(chooseAttentionForm({ ...todo2, provider: 'webgpu' }, 'mha'), { form: 'mha' });
  assert.deepEqual(chooseAttentionForm({ ...todo2, provider: 'cpu' }, 'chunked'), { form: 'chunked', chunk });
  assert.equal(chunkSize({ ...todo2, queries: 100, keys: 10, provider: 'cpu' }), 100, 'never more than the queries');
  assert.throws(() => checkAttentionForm('flash'), /unknown attention form "flash"; use auto, mha, chunked/);
});

test('every form gives the same attention on the CPU, chunks that do not divide the queries included', async () => {
  const run = async (form: 'mha' | 'chunked', chunk?: number): Promise<Float32Array> => {
    const g = new GraphBuilder('attn', undefined, undefined, { attentionForm: () => ({ form, chunk }) });
    const q = g.input('q', [2, 10, 16]);
    const kv = g.input('kv', [2, 4, 16]);
    g.output(g.multiHeadAttention(q, kv, kv, 2), 'out');
    assert.equal(g.attentionCalls[0]!.form.form, form);
    const s = await createSession(serializeModel(g.build()), undefined);
    const data = (n: number, f: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));
    const out = await s.run({ q: new ort.Tensor('float32', data(320, 0.37), [2, 10, 16]), kv: new ort.Tensor('float32', data(128, 0.91), [2, 4, 16]) });
    return out.out!.data as Float32Array;
  };
  const mha = await run('mha');
  for (const chunk of [3, 10]) assert.ok(relL2(await run('chunked', chunk), mha) <= 1e-5);
});

test('a whole U-Net with ToDo: chunked equals MultiHeadAttention to 1e-5', async () => {
  const sample = { data: Float32Array.from({ length: 2 * 4 * 16 * 16 }, (_, i) => Math.sin(i)), dims: [2, 4, 16, 16] };
  const text = { data: Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => Math.cos(i) * 0.5), dims: [2, 77, 32] };
  const attention = { method: 'todo' as const, factor: 2 };
  const a = await loadUNet(BUILTIN_MODEL_DIR, { attention, attentionForm: 'mha' });
  const b = await loadUNet(BUILTIN_MODEL_DIR, { attention, attentionForm: 'chunked' });
  assert.ok(b.plan({ batch: 2, height: 16, width: 16, textLength: 77 }).attentionCalls.every((c) => c.form.form === 'chunked'));
  const err = relL2((await b.forward(sample, 500, text)).data, (await a.forward(sample, 500, text)).data);
  assert.ok(err <= 1e-5, `relative L2 ${err}`);
  await a.dispose();
  await b.dispose();
});
