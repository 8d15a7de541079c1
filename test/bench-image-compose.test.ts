import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, StableDiffusion, type GenerateOptions, type PassInfo } from '../src/index.js';
import type { ComposedRecord, PartRecord, ScheduleEntry } from '../src/bench/image-compose.js';
import type { ImageRecord } from '../src/bench/image.js';
import { runCli, sharedDir } from './helpers.js';

let pipe: StableDiffusion;
before(async () => {
  pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
});
after(() => pipe.dispose());

const tinyPhoto = join(sharedDir, 'models', 'tiny-photo');

/** The hires fix at tiny-photo's size: 20 DPM++ 2M Karras steps, then 10 at denoise 0.5 (5 run), DeepCache 3, NGMS 1, ToDo 2 in both passes. */
const hiresFix: GenerateOptions = {
  prompt: 'a lighthouse',
  width: 32,
  height: 32,
  steps: 20,
  sampler: 'dpmpp-2m',
  karras: true,
  cfg: 7,
  seed: 3,
  attention: { method: 'todo', factor: 2 },
  deepcache: { interval: 3 },
  sMinUncond: 1,
  hires: { scale: 2, steps: 10, denoise: 0.5, upscaler: 'latent' },
};

test('parts() lays out what generate runs: each pass as generate reports it, DeepCache every 3rd step from each pass start, NGMS on odd shallow calls only', async () => {
  const parts = pipe.parts(hiresFix);
  const ran = await pipe.generate(hiresFix);
  const infos: PassInfo[] = parts.passes.map((p) => p.info);
  assert.deepEqual(infos, ran.settings.passes);
  assert.deepEqual(
    parts.passes.map((p) => p.evaluations.length),
    [20, 5],
  );
  // The helper's uniform rule restarts at each pass's first timestep: pass 2 (5 of 10 steps) is whole at 0 and 3.
  assert.deepEqual(
    parts.passes.map((p) => p.evaluations.flatMap((e, i) => (e.shallow ? [] : [i]))),
    [[0, 3, 6, 9, 12, 15, 18], [0, 3]],
  );
  for (const p of parts.passes) {
    for (const [i, e] of p.evaluations.entries()) if (e.promptOnly) assert.ok(e.shallow && i % 2 === 1, `pass ${p.info.pass} call ${i}: prompt-only only on odd shallow calls`);
    assert.ok(p.evaluations.every((e) => e.attentionActive));
  }
  // Karras sigmas fall below 1 after 10 of 20 steps; the second pass starts below it.
  assert.ok(ran.settings.passes[0]!.evaluations.promptOnly > 0 && ran.settings.passes[1]!.evaluations.promptOnly > 0);
  assert.deepEqual(
    parts.passes.map((p) => p.latentDims),
    [
      [1, 4, 16, 16],
      [1, 4, 32, 32],
    ],
  );
  const cond = await parts.encode();
  assert.deepEqual(
    cond.map((c) => c.encoderHiddenStates.dims[0]),
    [2, 2],
  );
  const image = await parts.decode({ data: new Float32Array(4 * 32 * 32), dims: [1, 4, 32, 32] });
  assert.deepEqual(image.dims, [1, 3, 64, 64]);
});

test("parts(): a pass's predictor runs its planned evaluations; what parts() does not lay out is refused by name", async () => {
  const parts = pipe.parts({ ...hiresFix, hires: undefined, steps: 4 });
  const [pass] = parts.passes;
  const predictor = await pass!.predictor();
  const [c] = await parts.encode();
  const x = { data: new Float32Array(4 * 16 * 16).fill(0.1), dims: [1, 4, 16, 16] };
  await assert.rejects(predictor.predict(1, x, pass!.evaluations[1]!.timestep, c!, true), /evaluation 1 is shallow, but no whole evaluation/);
  for (const i of [0, 1]) await predictor.predict(i, x, pass!.evaluations[i]!.timestep, c!, true);
  assert.deepEqual(predictor.evaluations, { full: 1, shallow: 1, promptOnly: 0 });
  assert.throws(() => pipe.parts({ ...hiresFix, hires: { ...hiresFix.hires!, upscaler: 'lanczos' } }), /Lanczos upscaler/);
  assert.throws(() => pipe.parts({ ...hiresFix, tiling: {} }), /does not cover tiling/);
});

function cli(...args: string[]): { out: string; md: string; json: { records: (PartRecord | ComposedRecord | ImageRecord | { type: 'fidelity' })[]; sampler: string; karras: boolean; mode: string } } {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-bench-image-'));
  const out = join(root, 'out');
  const r = runCli(root, 'bench', 'image', '--model', BUILTIN_MODEL_DIR, '--size', '16', '--steps', '4', '--sampler', 'DPM++ 2M Karras', '--hires-scale', '2', '--hires-steps', '4', ...args, '--out', out);
  assert.equal(r.code, 0, r.stderr);
  return { out, md: readFileSync(join(out, 'image.md'), 'utf8'), json: JSON.parse(readFileSync(join(out, 'image.json'), 'utf8')) };
}

const fidelityFlags = ['--fidelity-model', tinyPhoto, '--fidelity-size', '32', '--fidelity-images', '1'];

test('bench image --compose (smoke): each piece measured, a generation = text + Σ count × piece median + decode over its schedule, fidelity beside each row', () => {
  for (const split of [false, true]) {
    const { md, json } = cli('--methods', 'todo-2+deepcache-2,todo-2+deepcache-2+ngms-10', '--runs', '1', '--compose', ...(split ? ['--split-guidance'] : []), ...fidelityFlags, '--fidelity-methods', 'todo-auto+deepcache-2,todo-2+deepcache-2+ngms-10');
    assert.equal(json.mode, 'composed');
    assert.equal(json.sampler, 'dpmpp-2m');
    assert.equal(json.karras, true);
    const parts = json.records.filter((r): r is PartRecord => r.type === 'part');
    const composed = json.records.filter((r): r is ComposedRecord => r.type === 'composed');
    assert.deepEqual(
      composed.map((r) => r.method),
      ['dense', 'todo-2+deepcache-2', 'todo-2+deepcache-2+ngms-10'],
    );
    assert.equal(json.records.filter((r) => r.type === 'fidelity').length, 3);
    const median = (label: string): number => parts.find((p) => p.part === label)!.time.medianMs;
    for (const r of composed) {
      const sum = (es: ScheduleEntry[]): number => es.reduce((a, e) => a + e.count * e.weight * median(e.part), 0);
      assert.ok(Math.abs(r.unetMs - sum(r.schedule)) < 1e-6, r.method);
      assert.ok(Math.abs(r.totalMs - (median(r.textPart) + r.unetMs + median(r.decodePart))) < 1e-6, r.method);
      // A hires fix of the built-in U-Net keeps both sizes' sessions: a repeated generation starts none.
      assert.equal(r.sessionsEachGeneration, false);
      assert.equal(r.generationMs, r.totalMs);
      assert.ok(Math.abs(r.speedup - composed[0]!.generationMs / r.generationMs) < 1e-9);
      // Every evaluation of a pass is in its schedule, as often as the pass runs it.
      for (const p of r.passes) {
        const entries = r.schedule.filter((e) => e.pass === p.pass);
        assert.equal(entries.reduce((a, e) => a + e.count, 0), p.evaluations.full + p.evaluations.shallow, `${r.method} pass ${p.pass}`);
        assert.equal(entries.filter((e) => / shallow /.test(e.part)).reduce((a, e) => a + e.count, 0), p.evaluations.shallow);
        const guidedWeight = split ? 2 : 1;
        assert.equal(entries.reduce((a, e) => a + e.count * e.weight, 0), guidedWeight * (p.evaluations.full + p.evaluations.shallow) - (guidedWeight - 1) * p.evaluations.promptOnly);
      }
      assert.equal(r.splitGuidance, split);
    }
    assert.deepEqual(
      composed.map((r) => r.passes.map((p) => [p.evaluations.full, p.evaluations.shallow, p.evaluations.promptOnly])),
      [
        [[4, 0, 0], [2, 0, 0]],
        [[2, 2, 0], [1, 1, 0]],
        [[2, 2, composed[2]!.passes[0]!.evaluations.promptOnly], [1, 1, composed[2]!.passes[1]!.evaluations.promptOnly]],
      ],
    );
    assert.ok(composed[2]!.passes[0]!.evaluations.promptOnly > 0);
    const batches = new Set(parts.filter((p) => p.stage === 'unet').map((p) => p.batch));
    assert.deepEqual([...batches].sort(), split ? [1] : [1, 2]);
    assert.match(md, /Composed from measured parts/);
    assert.equal(/timed at batch 1 and counted twice/.test(md), split);
    assert.match(md, /## Measured parts[\s\S]*\| U-Net 32x32, batch \d, ToDo 2, shallow \(DeepCache layer 0, block 0\) \|/);
    // Fidelity: the stand-in's attention as it ran on tiny-photo (ToDo auto is off at 32 and 64 px there).
    assert.match(md, /\| todo-2\+deepcache-2 \| 2 \/ 2 \/ 0 \+ 1 \/ 1 \/ 0 \| .* \| todo-auto\+deepcache-2: 32x32 ToDo 1 → 64x64 ToDo 1 \| \d\.\d\de-\d \|/);
    assert.match(md, /\| dense \| .* \| dense: 32x32 dense → 64x64 dense \| 0 \| ∞ \| 1\.000 \|/);
  }
});

test('bench image (smoke): a hires fix whose every method part applies to both passes, A1111 sampler names with Karras, session starts apart, fidelity columns', () => {
  const { md, json } = cli('--methods', 'todo-2+deepcache-3+ngms-10', '--runs', '1', ...fidelityFlags);
  assert.equal(json.mode, 'whole');
  assert.equal(json.karras, true);
  const [dense, m] = json.records.filter((r): r is ImageRecord => r.type === 'image');
  assert.deepEqual(
    m!.passes.map((p) => [p.width, p.attention, p.deepcache?.interval]),
    [
      [16, { method: 'todo', factor: 2, level2Factor: 1, mode: 'nearest', stopAt: 1 }, 3],
      [32, { method: 'todo', factor: 2, level2Factor: 1, mode: 'nearest', stopAt: 1 }, 3],
    ],
  );
  assert.deepEqual(
    dense!.passes.map((p) => p.evaluations),
    [
      { full: 4, shallow: 0, promptOnly: 0 },
      { full: 2, shallow: 0, promptOnly: 0 },
    ],
  );
  for (const r of [dense!, m!]) {
    // The methods' turns open each one's U-Net sessions again for each size; a user repeating a
    // generation keeps them (the built-in U-Net fits twice), so the repeated time leaves them out.
    assert.ok(r.sessionStarts.unetCount >= 2 && r.sessionStarts.unetMs > 0);
    assert.ok(Math.abs(r.unetMs - (r.denoiseMs - r.sessionStarts.unetMs)) < 1e-6);
    assert.ok(Math.abs(r.repeated.medianMs - (r.total.medianMs - r.sessionStarts.ms)) < 1e-6);
  }
  assert.ok(Math.abs(m!.repeatedSpeedup - dense!.repeated.medianMs / m!.repeated.medianMs) < 1e-9);
  assert.match(md, /\| todo-2\+deepcache-3\+ngms-10 \| 2 \/ 2 \/ \d \+ 1 \/ 1 \/ \d \| .* \| todo-2\+deepcache-3\+ngms-10: 32x32 ToDo 2 → 64x64 ToDo 2 \| /);
  assert.match(md, /--sampler 'DPM\+\+ 2M Karras'/);
});

test('bench image: flags that do not fit together fail before any work', () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-bench-image-'));
  const run = (...args: string[]): ReturnType<typeof runCli> => runCli(root, 'bench', 'image', '--model', BUILTIN_MODEL_DIR, '--size', '16', '--steps', '2', '--runs', '1', '--out', join(root, 'out'), ...args);
  for (const [args, message] of [
    [['--split-guidance'], /--split-guidance belongs to --compose/],
    [['--methods', 'todo-2,deepcache-2', '--fidelity-model', tinyPhoto, '--fidelity-methods', 'todo-2'], /one method per --methods entry, in order: 2 methods, 1 fidelity methods/],
    [['--fidelity-methods', 'todo-2'], /need --fidelity-model/],
    [['--hires-steps', '3'], /add --hires-scale/],
    [['--methods', 'deepcache-2+taesd'], /decodes with a TAESD: give one with --taesd/],
  ] as const) {
    const r = run(...args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, message);
  }
});
