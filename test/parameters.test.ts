import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePng, readPngText } from '../src/io/png.js';
import { optionsFromParameters } from '../src/pipeline/from-parameters.js';
import { a1111Parameters, parseParameters } from '../src/pipeline/parameters.js';
import { runCli, sharedDir } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-params-'));
const model = join(sharedDir, 'models', 'tiny-photo');

/** SD 1.x's U-Net: self-attention at resolution levels 0, 1, 2. */
const SD_LEVELS = [0, 1, 2];

/** An infotext as AUTOMATIC1111 v1.10 writes it. */
const A1111_TEXT = [
  'masterpiece, (a red fox:1.2) in the snow,',
  'BREAK winter forest',
  'Negative prompt: lowres, blurry',
  'Steps: 12, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3170, Size: 32x48, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, ' +
    'Denoising strength: 0.5, Hires upscale: 2, Lora hashes: "fox: 1a2b3c4d5e6f, snow: 0f9e8d7c6b5a", Version: v1.10.1',
].join('\n');

test('parseParameters reads A1111 infotext: multi-line prompt, negative prompt, quoted values', () => {
  const p = parseParameters(A1111_TEXT);
  assert.equal(p.prompt, 'masterpiece, (a red fox:1.2) in the snow,\nBREAK winter forest');
  assert.equal(p.negativePrompt, 'lowres, blurry');
  assert.equal(p.settings['Lora hashes'], 'fox: 1a2b3c4d5e6f, snow: 0f9e8d7c6b5a');
  assert.equal(p.settings.Size, '32x48');
  assert.equal(p.settings['Schedule type'], 'Karras');
  assert.deepEqual(Object.keys(p.settings), ['Steps', 'Sampler', 'Schedule type', 'CFG scale', 'Seed', 'Size', 'Model hash', 'Model', 'Denoising strength', 'Hires upscale', 'Lora hashes', 'Version']);
});

test('parseParameters: a last line with fewer than 3 settings is prompt text; no negative prompt', () => {
  const p = parseParameters('a cat: orange\nsits: here, on: mat');
  assert.equal(p.prompt, 'a cat: orange\nsits: here, on: mat');
  assert.equal(p.negativePrompt, '');
  assert.deepEqual(p.settings, {});
});

test('a1111Parameters round-trips through parseParameters, quoting what needs it', () => {
  const text = a1111Parameters({
    prompt: 'a "quoted", odd: prompt',
    negativePrompt: 'bad',
    steps: 7,
    sampler: 'lms',
    karras: true,
    cfg: 5,
    seed: 42,
    width: 64,
    height: 32,
    model: 'my, model',
    clipSkip: 2,
    attention: { method: 'todo', factor: 2, mode: 'avg-pool', level2Factor: 1, stopAt: 0.5 },
    attentionLevels: SD_LEVELS,
    latent: [4, 8],
    promptSyntax: 'plain',
  });
  const p = parseParameters(text);
  assert.equal(p.prompt, 'a "quoted", odd: prompt');
  assert.equal(p.settings.Model, 'my, model');
  const { options, model, notApplied } = optionsFromParameters(p, SD_LEVELS);
  assert.equal(model, 'my, model');
  assert.deepEqual(notApplied, []);
  assert.deepEqual(options, {
    prompt: 'a "quoted", odd: prompt',
    negativePrompt: 'bad',
    steps: 7,
    sampler: 'lms',
    karras: true,
    cfg: 5,
    seed: 42,
    width: 64,
    height: 32,
    clipSkip: 2,
    promptSyntax: 'plain',
    attention: { method: 'todo', factor: 2, mode: 'avg-pool', level2Factor: 1, stopAt: 0.5 },
  });
});

test('optionsFromParameters: A1111 sampler + Schedule type, settings it cannot apply are listed, bad values are errors', () => {
  const { options, notApplied } = optionsFromParameters(parseParameters(A1111_TEXT), SD_LEVELS);
  assert.equal(options.sampler, 'dpmpp-2m');
  assert.equal(options.karras, true);
  assert.deepEqual([options.width, options.height, options.steps, options.cfg, options.seed], [32, 48, 12, 6.5, 3170]);
  assert.deepEqual(options.attention, { method: 'dense' });
  assert.deepEqual(notApplied, ['Denoising strength', 'Hires upscale', 'Lora hashes']);
  const exponential = optionsFromParameters(parseParameters('x\nSteps: 2, Sampler: Euler, Schedule type: Exponential, Seed: 1'), SD_LEVELS);
  assert.deepEqual([exponential.options.karras, exponential.notApplied], [false, ['Schedule type']]);
  assert.throws(() => optionsFromParameters(parseParameters('x\nSteps: 1.5, Seed: 1, Size: 8x8'), SD_LEVELS), /"Steps: 1\.5" is not an integer/);
  assert.throws(() => optionsFromParameters(parseParameters('x\nSteps: 2, Sampler: DPM++ 9M, Size: 8x8'), SD_LEVELS), /unknown sampler "DPM\+\+ 9M"/);
  assert.throws(() => optionsFromParameters(parseParameters('x\nSteps: 2, Seed: 1, Size: big'), SD_LEVELS), /"Size: big" is not WIDTHxHEIGHT/);
});

test('info prints the parameters (--json: the parsed record); --from-png makes the same bytes again; flags override', () => {
  const first = join(root, 'first.png');
  const gen = ['generate', '--model', model, '-p', 'a (lighthouse:1.2) at dusk', '-n', 'blurry', '--steps', '3', '--seed', '11', '--sampler', 'Euler a', '-W', '32', '-H', '32'];
  const r = runCli(root, ...gen, '-o', first);
  assert.equal(r.code, 0, r.stderr);
  const info = runCli(root, 'info', first);
  assert.equal(info.code, 0, info.stderr);
  assert.equal(info.stdout, `${readPngText(readFileSync(first)).parameters}\n`);
  assert.match(info.stdout, /^a \(lighthouse:1\.2\) at dusk\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 7\.5, Seed: 11, Size: 32x32, Model: tiny-photo/);
  const json = runCli(root, 'info', first, '--json');
  assert.deepEqual(JSON.parse(json.stdout), parseParameters(readPngText(readFileSync(first)).parameters!));

  const again = join(root, 'again.png');
  const a = runCli(root, 'generate', '--model', model, '--from-png', first, '-o', again);
  assert.equal(a.code, 0, a.stderr);
  assert.deepEqual(readFileSync(again), readFileSync(first));

  const other = join(root, 'other.png');
  const o = runCli(root, 'generate', '--model', model, '--from-png', first, '--seed', '12', '-o', other);
  assert.equal(o.code, 0, o.stderr);
  assert.match(readPngText(readFileSync(other)).parameters!, /Steps: 3, Sampler: Euler a, CFG scale: 7\.5, Seed: 12,/);
  assert.notDeepEqual(readFileSync(other), readFileSync(first));
});

test('--from-png with A1111 settings we do not apply says so; bad inputs fail with a clear message', () => {
  const a1111 = join(root, 'a1111.png');
  writeFileSync(a1111, encodePng({ width: 1, height: 1, data: new Uint8Array(3) }, { parameters: A1111_TEXT.replace('Steps: 12', 'Steps: 2') }));
  const out = join(root, 'from-a1111.png');
  const r = runCli(root, 'generate', '--model', model, '--from-png', a1111, '-o', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /made with model "v1-5-pruned-emaonly"; regenerating with "tiny-photo"/);
  assert.match(r.stderr, /settings not applied: Denoising strength, Hires upscale, Lora hashes/);
  assert.match(readPngText(readFileSync(out)).parameters!, /Sampler: DPM\+\+ 2M Karras, CFG scale: 6\.5, Seed: 3170, Size: 32x48/);

  const notPng = join(root, 'not.png');
  writeFileSync(notPng, 'hello');
  const plain = join(root, 'plain.png');
  writeFileSync(plain, encodePng({ width: 1, height: 1, data: new Uint8Array(3) }));
  for (const [args, message] of [
    [['info', notPng], /not\.png is not a PNG file/],
    [['info', plain], /plain\.png has no "parameters" text/],
    [['info', join(root, 'missing.png')], /cannot read .*missing\.png: no such file/],
    [['generate', '--model', model, '--from-png', notPng, '-o', join(root, 'x.png')], /not\.png is not a PNG file/],
    [['generate', '--model', model, '-o', join(root, 'x.png')], /--prompt is required \(or --from-png/],
  ] as const) {
    const b = runCli(root, ...args);
    assert.notEqual(b.code, 0, args.join(' '));
    assert.match(b.stderr, message);
  }
});
