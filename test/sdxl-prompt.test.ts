import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeWeighted, parseUNetConfig, promptChunks, PromptConditioning, readPngText, SdxlConditioner, StableDiffusion } from '../src/index.js';
import type { ConditioningRequest, Tensor } from '../src/index.js';
import { fixture, runCli } from './helpers.js';

const model = fixture('sdxl-tiny');
/** sdxl-tiny's widths: ViT-L 8, bigG 16 (= 24 channels), pooled 12. */
const [D1, D2, P] = [8, 16, 12];
const D = D1 + D2;

let loaded: Promise<SdxlConditioner> | undefined;
function conditioner(): Promise<SdxlConditioner> {
  loaded ??= SdxlConditioner.load(model, parseUNetConfig(JSON.parse(readFileSync(join(model, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>));
  return loaded;
}

async function a1111(texts: string[]): Promise<{ hidden: Tensor; pooled: Tensor }[]> {
  const out = await encodeWeighted(texts, (await conditioner()).promptEncoders(1));
  return out.map((e) => ({ hidden: e.hidden, pooled: e.pooled! }));
}

/** Token `t`'s channels [from, to) of hidden states [1, L, D]. */
function channels(h: Tensor, t: number, from: number, to: number): Float32Array {
  return h.data.subarray(t * D + from, t * D + to);
}

function mean(h: Tensor, from: number, to: number): number {
  let s = 0;
  const tokens = h.dims[1]!;
  for (let t = 0; t < tokens; t++) for (const v of channels(h, t, from, to)) s += v;
  return s / (tokens * (to - from));
}

test('SDXL a1111: a plain prompt within 75 tokens is bit for bit the plain (diffusers) conditioning, zero negative included', async () => {
  const sdxl = await conditioner();
  for (const negative of ['blurry, dark', undefined]) {
    const plain = await sdxl.encode({ prompt: 'a photo of a cat, sitting on a mat', negativePrompt: negative, batch: 2, guided: true, clipSkip: 1, width: 128, height: 128 });
    const request: ConditioningRequest = {
      prompt: 'a photo of a cat, sitting on a mat',
      negativePrompt: negative ?? '',
      steps: 4,
      batch: 2,
      guided: true,
      syntax: 'a1111',
      zeroNegative: negative === undefined && sdxl.forceZerosForEmptyPrompt,
    };
    const c = await PromptConditioning.build(request, sdxl.promptEncoders(1));
    assert.equal(c.scheduled, false);
    assert.deepEqual(c.at(0).dims, plain.encoderHiddenStates.dims);
    assert.deepEqual(c.at(0).data, plain.encoderHiddenStates.data, `hidden states, negative ${negative}`);
    assert.deepEqual(c.pooledAt(0), plain.added!.textEmbeds, `pooled, negative ${negative}`);
  }
});

test('SDXL a1111: (cat:1.3) scales only the cat token of each encoder before the mean restore, and each mean is restored; pooled unweighted', async () => {
  const sdxl = await conditioner();
  // Encoded apart: A1111 takes the emphasis mean over every text of one call.
  const [[weighted], [plain]] = [await a1111(['a (cat:1.3) on a mat']), await a1111(['a cat on a mat'])];
  for (const tok of sdxl.tokenizers) {
    const [chunk] = promptChunks('a (cat:1.3) on a mat', tok);
    assert.deepEqual(chunk!.multipliers.flatMap((m, i) => (m === 1 ? [] : [[i, m]])), [[2, 1.3]], 'the weight sits on token 2 (start, a, cat)');
  }
  for (const [from, to] of [[0, D1], [D1, D]] as const) {
    // Before the restore the weighted states were plain · multiplier, so weighted / plain is one scale everywhere but 1.3× it at cat.
    const before = mean(plain!.hidden, from, to) + (0.3 * channels(plain!.hidden, 2, from, to).reduce((a, b) => a + b, 0)) / (77 * (to - from));
    const scale = mean(plain!.hidden, from, to) / before;
    for (let t = 0; t < 77; t++) {
      const want = channels(plain!.hidden, t, from, to).map((v) => v * scale * (t === 2 ? 1.3 : 1));
      const got = channels(weighted!.hidden, t, from, to);
      got.forEach((v, c) => assert.ok(Math.abs(v - want[c]!) <= 1e-5 * Math.max(1, Math.abs(want[c]!)), `token ${t} channel ${from + c}: ${v} vs ${want[c]}`));
    }
    const [m, m0] = [mean(weighted!.hidden, from, to), mean(plain!.hidden, from, to)];
    assert.ok(Math.abs(m - m0) <= 1e-5 * Math.abs(m0), `channels ${from}–${to}: mean ${m} restored to ${m0}`);
    assert.ok(Math.abs(scale - 1) > 1e-4, 'the restore did rescale');
  }
  assert.deepEqual(weighted!.pooled.data, plain!.pooled.data, 'the pooled vector takes no emphasis');
});

test('SDXL a1111: a prompt over 75 tokens gives 154 tokens; the negative is padded to it with the empty prompt', async () => {
  const sdxl = await conditioner();
  const long = Array(80).fill('cat').join(' ');
  const [z] = await a1111([long]);
  assert.deepEqual(z!.hidden.dims, [1, 154, D]);
  const c = await PromptConditioning.build({ prompt: long, negativePrompt: 'dog', steps: 2, batch: 1, guided: true, syntax: 'a1111' }, sdxl.promptEncoders(1));
  assert.deepEqual(c.at(0).dims, [2, 154, D]);
  assert.deepEqual(c.pooledAt(0)!.dims, [2, P]);
  const [dog, empty] = await a1111(['dog', '']);
  assert.deepEqual(c.at(0).data.subarray(0, 77 * D), dog!.hidden.data);
  assert.deepEqual(c.at(0).data.subarray(77 * D, 154 * D), empty!.hidden.data);
});

test('SDXL a1111: BREAK gives two chunks, each its own encoding; the pooled vector is the first chunk\'s', async () => {
  // Encoded apart: one call pads its texts to one chunk count.
  const [[both], [cat], [dog]] = [await a1111(['a cat BREAK a dog']), await a1111(['a cat']), await a1111(['a dog'])];
  assert.deepEqual(both!.hidden.dims, [1, 154, D]);
  assert.deepEqual(both!.hidden.data.subarray(0, 77 * D), cat!.hidden.data);
  assert.deepEqual(both!.hidden.data.subarray(77 * D), dog!.hidden.data);
  assert.deepEqual(both!.pooled.data, cat!.pooled.data);
  assert.notDeepEqual(cat!.pooled.data, dog!.pooled.data);

  // Over 75 tokens too: the pooled vector is bigG's for the first chunk's ids alone.
  const sdxl = await conditioner();
  const long = Array(80).fill('cat').join(' ');
  const [z] = await a1111([long]);
  const first = promptChunks(long, sdxl.tokenizers[1])[0]!.tokens;
  const direct = await sdxl.textEncoders[1].forwardHiddenStates({ data: Int32Array.from(first), dims: [1, 77] });
  assert.deepEqual(z!.pooled.data, direct.textEmbeds!.data);
});

test('SDXL a1111: tokenizers that chunk differently (diffusers\' tokenizer_2 splits "!") are padded with empty chunks to one count', async () => {
  const sdxl = await conditioner();
  const prompt = Array(30).fill('wow!!!!').join(' ');
  assert.deepEqual(sdxl.tokenizers.map((t) => promptChunks(prompt, t).length), [1, 2]);
  const [z, empty] = await a1111([prompt, '']);
  assert.deepEqual(z!.hidden.dims, [1, 154, D]);
  for (let t = 77; t < 154; t++) assert.deepEqual(channels(z!.hidden, t, 0, D1), channels(empty!.hidden, t - 77, 0, D1), `ViT-L token ${t} is the empty chunk's`);
  assert.notDeepEqual(channels(z!.hidden, 100, D1, D), channels(empty!.hidden, 23, D1, D), 'bigG has a real second chunk');
});

test('SDXL a1111: [a cat:a dog:0.5] switches hidden states and pooled vector after step 2 of 4', async () => {
  const sdxl = await conditioner();
  const c = await PromptConditioning.build({ prompt: '[a cat:a dog:0.5] on a mat', negativePrompt: '', steps: 4, batch: 1, guided: false, syntax: 'a1111' }, sdxl.promptEncoders(1));
  assert.equal(c.scheduled, true);
  const [cat, dog] = await a1111(['a cat on a mat', 'a dog on a mat']);
  for (const [step, want] of [[0, cat], [2, cat], [3, dog]] as const) {
    assert.deepEqual(c.at(step).data, want!.hidden.data, `hidden, step ${step}`);
    assert.deepEqual(c.pooledAt(step)!.data, want!.pooled.data, `pooled, step ${step}`);
  }
  assert.notDeepEqual(c.at(0).data, c.at(3).data);
  assert.notDeepEqual(c.pooledAt(0)!.data, c.pooledAt(3)!.data);
});

test('SDXL a1111 through the pipeline: the device loop (on the CPU) takes a weighted prompt, prompt editing falls back to the host loop, hires runs', async () => {
  const host = await StableDiffusion.load(model, { deviceLoop: false });
  const dev = await StableDiffusion.load(model, { deviceLoop: true });
  try {
    const base = { width: 64, height: 64, steps: 2, seed: 3, cfg: 5 };
    for (const [prompt, onDevice] of [['a (cat:1.3) BREAK a dog', true], ['[a cat:a dog:0.5]', false]] as const) {
      // Only the host loop hands its latents to onStep.
      const latentsSeen: boolean[] = [];
      const a = await host.generate({ ...base, prompt });
      const b = await dev.generate({ ...base, prompt }, { onStep: (i) => i.phase === 'denoise' && latentsSeen.push(i.latents !== undefined) });
      assert.deepEqual(latentsSeen, [!onDevice, !onDevice], `${prompt}: ${onDevice ? 'device' : 'host'} loop`);
      let maxDiff = 0;
      a.images[0]!.data.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - b.images[0]!.data[i]!))));
      assert.ok(maxDiff <= 1, `${prompt}: device vs host loop, max |diff| ${maxDiff}`);
    }
    const warnings: string[] = [];
    const r = await host.generate({ ...base, prompt: '[a cat:a dog:0.5], (fur:1.2)', hires: { scale: 1.5, denoise: 0.5, upscaler: 'latent' } }, { onWarning: (m) => warnings.push(m) });
    assert.deepEqual(r.settings.passes.map((p) => [p.width, p.height]), [[64, 64], [96, 96]]);
    assert.deepEqual(warnings, []);
  } finally {
    await Promise.all([host.dispose(), dev.dispose()]);
  }
});

test("CLI: generate --model sdxl-tiny --prompt '(cat:1.2) BREAK dog' draws an image without the plain-text warning", () => {
  const dir = mkdtempSync(join(tmpdir(), 'todo-sd-sdxl-prompt-'));
  try {
    const out = join(dir, 'out.png');
    const r = runCli(dir, 'generate', '--model', model, '--prompt', '(cat:1.2) BREAK dog', '--width', '64', '--height', '64', '--steps', '2', '--seed', '1', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(out));
    assert.doesNotMatch(r.stderr, /plain text/);
    assert.match(readPngText(readFileSync(out)).parameters!, /^\(cat:1\.2\) BREAK dog\n/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
