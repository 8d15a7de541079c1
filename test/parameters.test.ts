import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePng, readPngText } from '../src/io/png.js';
import { optionsFromParameters } from '../src/pipeline/from-parameters.js';
import { a1111Parameters, parseParameters } from '../src/pipeline/parameters.js';
import type { AttentionOptions } from '../src/attention/options.js';
import type { TodoOptions } from '../src/attention/todo.js';
import { fixture, runCli, sharedDir } from './helpers.js';

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
  // The hires fix is applied; the LoRAs are not, since the prompt has no <lora:…> tags to find them by.
  assert.deepEqual(options.hires, { scale: 2, denoise: 0.5, upscaler: 'latent' });
  assert.deepEqual(notApplied, ['Lora hashes']);
  const exponential = optionsFromParameters(parseParameters('x\nSteps: 2, Sampler: Euler, Schedule type: Exponential, Seed: 1'), SD_LEVELS);
  assert.deepEqual(
    [exponential.options.karras, exponential.notApplied],
    [false, ['Schedule type ("Exponential" is not applied (offered: Automatic, Karras, SGM Uniform, Uniform, Leading): the sampler\'s schedule used)']],
  );
  const sgm = optionsFromParameters(parseParameters('x\nSteps: 4, Sampler: Euler, Schedule type: SGM Uniform, Seed: 1'), SD_LEVELS);
  assert.deepEqual([sgm.options.timestepSpacing, sgm.options.karras, sgm.notApplied], ['trailing', false, []]);
  const ddimKarras = optionsFromParameters(parseParameters('x\nSteps: 4, Sampler: DDIM, Schedule type: Karras, Seed: 1'), SD_LEVELS);
  assert.deepEqual([ddimKarras.options.karras, ddimKarras.notApplied.length], [false, 1]);
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
  assert.match(r.stderr, /settings not applied: Lora hashes\n/);
  assert.match(readPngText(readFileSync(out)).parameters!, /Sampler: DPM\+\+ 2M Karras, CFG scale: 6\.5, Seed: 3170, Size: 32x48, .*Denoising strength: 0\.5, Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent/);

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

/** a1111Parameters for a hires-fix image whose passes used `first` and `second`. */
function hiresText(first: AttentionOptions, second: AttentionOptions): string {
  return a1111Parameters({
    prompt: 'p',
    negativePrompt: '',
    steps: 4,
    sampler: 'ddim',
    karras: false,
    cfg: 7,
    seed: 1,
    width: 64,
    height: 64,
    model: 'm',
    clipSkip: 1,
    attention: first,
    attentionLevels: SD_LEVELS,
    latent: [8, 8],
    hires: { scale: 2, steps: 3, denoise: 0.4, upscaler: 'lanczos' },
    passes: [{ attention: first }, { attention: second }],
  });
}

test('hires fix in the parameters: each pass\'s attention round-trips, the second written only where it differs', () => {
  const todo = (factor: number, more: Partial<TodoOptions> = {}): AttentionOptions => ({ method: 'todo', factor, mode: 'nearest-exact', level2Factor: 1, stopAt: 1, ...more });
  const cases: [AttentionOptions, AttentionOptions, AttentionOptions | undefined][] = [
    [todo(2), todo(2), todo(2)],
    [todo(2, { mode: 'avg-pool', stopAt: 0.5 }), todo(3, { mode: 'avg-pool', stopAt: 0.5 }), todo(3, { mode: 'avg-pool', stopAt: 0.5 })],
    [{ method: 'dense' }, todo(2, { mode: 'avg-pool', level2Factor: 1.5 }), todo(2, { mode: 'avg-pool', level2Factor: 1.5 })],
    [todo(2, { mode: 'bilinear', level2Factor: 2 }), todo(2), todo(2)],
    [todo(2), { method: 'dense' }, { method: 'dense' }],
    [{ method: 'tome', ratio: 0.5 }, { method: 'dense' }, { method: 'dense' }],
    [{ method: 'tome', ratio: 0.5 }, todo(2), todo(2)],
    [todo(2), { method: 'tome', ratio: 0.3 }, { method: 'tome', ratio: 0.3 }],
    [{ method: 'dense' }, { method: 'dense' }, undefined],
  ];
  for (const [first, second, expected] of cases) {
    const text = hiresText(first, second);
    const { options, notApplied } = optionsFromParameters(parseParameters(text), SD_LEVELS);
    const label = `${JSON.stringify(first)} then ${JSON.stringify(second)}: ${text}`;
    assert.deepEqual(notApplied, [], label);
    assert.deepEqual(options.attention, first, label);
    assert.deepEqual(options.hires, { scale: 2, steps: 3, denoise: 0.4, upscaler: 'lanczos', ...(expected ? { attention: expected } : {}) }, label);
  }
  // Equal passes: only the factor is repeated.
  assert.match(hiresText(todo(2), todo(2)), /Hires ToDo factor: 2\.0, Version/);
});

test('hires fix in A1111 parameters: Hires resize, absent steps, upscalers we do not have; img2img strength needs the image', () => {
  const read = (settings: string): ReturnType<typeof optionsFromParameters> => optionsFromParameters(parseParameters(`p\nSteps: 6, Seed: 1, Size: 32x48, ${settings}`), SD_LEVELS);
  const resize = read('Denoising strength: 0.45, Hires resize: 64x96, Hires upscaler: Latent (nearest)');
  assert.deepEqual(resize.options.hires, { scale: 2, denoise: 0.45, upscaler: 'latent-nearest' });
  assert.deepEqual(resize.notApplied, []);
  const uneven = read('Denoising strength: 0.45, Hires resize: 64x64');
  assert.equal(uneven.options.hires, undefined);
  assert.deepEqual(uneven.notApplied, ['Denoising strength', 'Hires resize (only a resize by the same factor on both sides is offered)']);
  const esrgan = read('Denoising strength: 0.3, Hires upscale: 1.5, Hires steps: 0, Hires upscaler: R-ESRGAN 4x+, Hires sampler: Euler');
  assert.deepEqual(esrgan.options.hires, { scale: 1.5, denoise: 0.3, upscaler: 'latent' });
  assert.deepEqual(esrgan.notApplied, ['Hires upscaler ("R-ESRGAN 4x+" is not offered here (Latent, Latent (nearest), Lanczos): Latent used)', 'Hires sampler']);
  const img2img = read('Denoising strength: 0.6, Mask blur: 3');
  assert.deepEqual(img2img.imageToImage, { strength: 0.6, maskBlur: 3 });
  assert.equal(img2img.options.hires, undefined);
  assert.deepEqual(img2img.notApplied, ['Denoising strength', 'Mask blur']);
});

test('--from-png remakes hires-fix, LoRA and image-to-image pictures byte for byte; hires flags override field by field', () => {
  const loraDir = fixture('lora');
  const made = join(root, 'hires-lora.png');
  const gen = ['generate', '--model', model, '-p', 'a lighthouse', '--steps', '3', '--seed', '4', '-W', '32', '-H', '32', '--sampler', 'ddim'];
  const r = runCli(root, ...gen, '--hires-scale', '1.5', '--hires-steps', '2', '--hires-denoise', '0.6', '--hires-todo', '2', '--todo-mode', 'avg-pool', '--lora', `${join(loraDir, 'lora-kohya.safetensors')}:0.7`, '-o', made);
  assert.equal(r.code, 0, r.stderr);
  const again = join(root, 'hires-lora-again.png');
  const a = runCli(root, 'generate', '--model', model, '--from-png', made, '--lora-dir', loraDir, '-o', again);
  assert.equal(a.code, 0, a.stderr);
  assert.doesNotMatch(a.stderr, /not applied|differ/);
  assert.deepEqual(readFileSync(again), readFileSync(made));
  // Without the LoRA folder the prompt's tag cannot be found: a clear error, nothing written.
  const noDir = runCli(root, 'generate', '--model', model, '--from-png', made, '-o', join(root, 'no-dir.png'));
  assert.notEqual(noDir.code, 0);
  assert.match(noDir.stderr, /<lora:lora-kohya> but no LoRA folder is set: pass --lora-dir DIR/);
  assert.equal(existsSync(join(root, 'no-dir.png')), false);
  // Another file under the same name: made, with a warning that the LoRA is not the one used.
  const otherDir = mkdtempSync(join(root, 'other-loras-'));
  copyFileSync(join(loraDir, 'lora-ldm.safetensors'), join(otherDir, 'lora-kohya.safetensors'));
  const swapped = runCli(root, 'generate', '--model', model, '--from-png', made, '--lora-dir', otherDir, '-o', join(root, 'swapped.png'));
  assert.equal(swapped.code, 0, swapped.stderr);
  assert.match(swapped.stderr, /the LoRAs differ from those the image was made with/);
  // A typed hires flag replaces that field only.
  const steps = join(root, 'hires-steps.png');
  const s = runCli(root, 'generate', '--model', model, '--from-png', made, '--lora-dir', loraDir, '--hires-steps', '4', '-o', steps);
  assert.equal(s.code, 0, s.stderr);
  assert.match(readPngText(readFileSync(steps)).parameters!, /Denoising strength: 0\.6, Hires upscale: 1\.5, Hires steps: 4, Hires upscaler: Latent, Hires ToDo factor: 2\.0, .*Hires ToDo mode: avg-pool/);

  // Image-to-image: the strength applies once the init image is given again.
  const img = join(root, 'img2img.png');
  const i = runCli(root, ...gen, '--init-image', made, '--strength', '0.55', '-o', img);
  assert.equal(i.code, 0, i.stderr);
  const bare = runCli(root, 'generate', '--model', model, '--from-png', img, '-o', join(root, 'bare.png'));
  assert.equal(bare.code, 0, bare.stderr);
  assert.match(bare.stderr, /Denoising strength \(the image was made from an init image: give --init-image to apply it\)/);
  const withInit = join(root, 'img2img-again.png');
  const w = runCli(root, 'generate', '--model', model, '--from-png', img, '--init-image', made, '-o', withInit);
  assert.equal(w.code, 0, w.stderr);
  assert.doesNotMatch(w.stderr, /not applied/);
  assert.deepEqual(readFileSync(withInit), readFileSync(img));
});
