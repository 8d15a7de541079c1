import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadUNet, writeRandomModel } from '../src/index.js';
import { Progress } from '../src/cli/progress.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-rt-'));
const model = join(root, 'tiny');
writeRandomModel(model, 'tiny', { seed: 6 });
const sample = { data: new Float32Array(4 * 8 * 8).fill(0.2), dims: [1, 4, 8, 8] };
const text = { data: new Float32Array(77 * 32).fill(0.1), dims: [1, 77, 32] };

test('a missing execution provider falls back to the CPU with a clear warning; an unknown one is an error', async () => {
  const warnings: string[] = [];
  const unet = await loadUNet(model, { executionProvider: 'cuda', onWarning: (m) => warnings.push(m) });
  const out = await unet.forward(sample, 10, text);
  assert.deepEqual(out.dims, [1, 4, 8, 8]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /execution provider "cuda" is not available here \(.+\); falling back to the CPU/);
  await unet.dispose();
  await assert.rejects(loadUNet(model, { executionProvider: 'metal' }), /unknown execution provider "metal"; use one of cpu, webgpu, cuda, tensorrt/);
});

test('graphs are cached on disk per shape and options, and rebuilt when the weights change', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'todo-sd-cache-'));
  const saved = process.env.TODO_SD_CACHE;
  process.env.TODO_SD_CACHE = cache;
  try {
    const graphs = (): string[] => readdirSync(join(cache, 'graphs')).filter((f) => f.endsWith('.onnx'));
    const run = async (opts: Parameters<typeof loadUNet>[1], s = sample): Promise<void> => {
      const unet = await loadUNet(model, opts);
      const b = s.dims[0]!;
      await unet.forward(s, 10, { data: new Float32Array(b * 77 * 32).fill(0.1), dims: [b, 77, 32] });
      await unet.dispose();
    };
    await run({});
    assert.equal(graphs().length, 1);
    await run({});
    assert.equal(graphs().length, 1, 'same component, shape and options: read from the cache');
    await run({ attention: { method: 'todo', factor: 2 } });
    assert.equal(graphs().length, 2, 'other options: another graph');
    await run({}, { data: new Float32Array(2 * 4 * 8 * 8), dims: [2, 4, 8, 8] });
    assert.equal(graphs().length, 3, 'another shape: another graph');
    const later = new Date(Date.now() + 5000);
    utimesSync(join(model, 'unet', 'diffusion_pytorch_model.safetensors'), later, later);
    await run({});
    assert.equal(graphs().length, 4, 'changed weights: rebuilt');
  } finally {
    if (saved === undefined) delete process.env.TODO_SD_CACHE;
    else process.env.TODO_SD_CACHE = saved;
  }
});

function sink(tty: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let text = '';
  const w = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  }) as unknown as NodeJS.WriteStream;
  Object.assign(w, { isTTY: tty, columns: 100, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
  return { stream: w, text: () => text };
}

test('progress: steps, it/s and ETA on a terminal; in a pipe no bar, only the closing message', () => {
  const tty = sink(true);
  const p = new Progress(tty.stream);
  for (let i = 1; i <= 4; i++) p.update(i, 4);
  p.finish('decoded');
  assert.match(tty.text(), /denoising .*4\/4 steps \| [\d.]+ it\/s \| ETA/);
  assert.match(tty.text(), /decoded\n$/);
  const pipe = sink(false);
  const q = new Progress(pipe.stream);
  q.update(1, 2);
  q.finish('decoded');
  // A message is a line of its own wherever stderr goes (the command's "wrote …"); the bar only on a terminal.
  assert.equal(pipe.text(), 'decoded\n');
});

test('WebGPU without an adapter falls back to the CPU with its defaults (fp32), warning once however many sessions open', async () => {
  const warnings: string[] = [];
  const unet = await loadUNet(model, { executionProvider: 'webgpu', onWarning: (m) => warnings.push(m) });
  const cpu = await loadUNet(model);
  const out = await unet.forward(sample, 10, text);
  await unet.forward({ data: new Float32Array(4 * 16 * 16), dims: [1, 4, 16, 16] }, 10, text);
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, /execution provider "webgpu" is not available here \(.+\); falling back to the CPU/);
  assert.deepEqual(out.data, (await cpu.forward(sample, 10, text)).data, 'fp32, as on the CPU, not the GPU default fp16');
  await unet.dispose();
  await cpu.dispose();
});
