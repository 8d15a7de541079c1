import { test, before } from 'node:test';
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from 'fast-png';
import sharp from 'sharp';
import { readPngText, writeRandomModel, writeSafetensors, randn } from '../src/index.js';
import { fixture, repoRoot, runCli } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-cli-'));
const model = join(root, 'tiny');

before(() => writeRandomModel(model, 'tiny', { seed: 3 }));

const cli = (...args: string[]): ReturnType<typeof runCli> => runCli(root, ...args);

const base = ['generate', '--model', model, '--prompt', 'a red barn in a field', '--steps', '4', '--width', '32', '--height', '48'];

function pixels(file: string): Uint8Array {
  return decode(readFileSync(file)).data as Uint8Array;
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i]! - b[i]!);
  return d / a.length;
}

test('generate writes a PNG of the asked size with A1111 parameters; same seed → same bytes', () => {
  const a = join(root, 'a.png');
  const r = cli(...base, '--seed', '7', '--out', a, '--json');
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { files: string[]; width: number; height: number; seed: number; sampler: string };
  assert.deepEqual(summary.files, [a]);
  assert.equal(summary.seed, 7);
  assert.equal(summary.sampler, 'pndm'); // the model's own scheduler
  const png = decode(readFileSync(a));
  assert.equal(png.width, 32);
  assert.equal(png.height, 48);
  assert.equal(png.channels, 3);
  const params = readPngText(readFileSync(a)).parameters!;
  assert.equal(params.split('\n')[0], 'a red barn in a field');
  assert.match(params, /^Steps: 4, Sampler: PLMS, CFG scale: 7\.5, Seed: 7, Size: 32x48, Model: tiny, Version: todo-sd$/m);
  // Nothing but JSON on stdout, and no progress bar in a pipe.
  assert.equal(r.stderr, '');

  const b = join(root, 'b.png');
  assert.equal(cli(...base, '--seed', '7', '--out', b).code, 0);
  assert.deepEqual(readFileSync(b), readFileSync(a));

  const c = join(root, 'c.png');
  assert.equal(cli(...base, '--seed', '8', '--out', c).code, 0);
  assert.ok(meanAbsDiff(pixels(c), pixels(a)) > 1, 'another seed gives another image');
});

test('--todo 2 gives a different but close image', () => {
  const dense = join(root, 'dense.png');
  const todo = join(root, 'todo.png');
  const other = join(root, 'other-seed.png');
  assert.equal(cli(...base, '--seed', '11', '--out', dense).code, 0);
  const r = cli(...base, '--seed', '11', '--todo', '2', '--out', todo);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(cli(...base, '--seed', '12', '--out', other).code, 0);
  const dTodo = meanAbsDiff(pixels(todo), pixels(dense));
  const dSeed = meanAbsDiff(pixels(other), pixels(dense));
  assert.ok(dTodo > 0, 'ToDo changes the image');
  assert.ok(dTodo < dSeed / 2, `ToDo stays close to dense (${dTodo}) compared with another seed (${dSeed})`);
  assert.match(readPngText(readFileSync(todo)).parameters!, /ToDo factor: 2\.0, ToDo max depth: 1, ToDo disable after: 1\.0, ToDo mode: nearest/);
  const tome = join(root, 'tome.png');
  assert.equal(cli(...base, '--seed', '11', '--tome', '0.5', '--out', tome).code, 0);
  assert.match(readPngText(readFileSync(tome)).parameters!, /Token merging ratio: 0\.5/);
  assert.ok(meanAbsDiff(pixels(tome), pixels(dense)) > 0);
});

test('batch, sampler, latents from a file and a non-Latin-1 prompt', () => {
  const out = join(root, 'batch.png');
  const r = cli(...base, '--seed', '5', '--batch', '2', '--sampler', 'euler-a', '--karras', '--prompt', '富士山の夕焼け 🌄', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(root, 'batch-0.png')) && existsSync(join(root, 'batch-1.png')));
  assert.match(readPngText(readFileSync(join(root, 'batch-1.png'))).parameters!, /^富士山の夕焼け 🌄\nSteps: 4, Sampler: Euler a Karras/);
  // The seed's noise written to a file reproduces the seeded image.
  const lat = join(root, 'latents.safetensors');
  writeSafetensors(lat, { latents: { dtype: 'F32', shape: [1, 4, 24, 16], data: randn(9, [1, 4, 24, 16]) } });
  const seeded = join(root, 'seeded.png');
  const fromFile = join(root, 'fromfile.png');
  assert.equal(cli(...base, '--seed', '9', '--sampler', 'ddim', '--out', seeded).code, 0);
  assert.equal(cli(...base, '--seed', '9', '--sampler', 'ddim', '--latents', lat, '--out', fromFile).code, 0);
  assert.deepEqual(pixels(fromFile), pixels(seeded));
});

test('the pipeline runs on a model folder assembled from the tiny fixtures', () => {
  const dir = join(root, 'fixture-model');
  mkdirSync(dir);
  cpSync(fixture('unet-tiny', 'unet'), join(dir, 'unet'), { recursive: true });
  cpSync(fixture('vae-tiny', 'vae'), join(dir, 'vae'), { recursive: true });
  cpSync(fixture('clip-text-tiny', 'text_encoder'), join(dir, 'text_encoder'), { recursive: true });
  cpSync(fixture('clip-tokenizer-sd1', 'tokenizer'), join(dir, 'tokenizer'), { recursive: true });
  mkdirSync(join(dir, 'scheduler'));
  writeFileSync(join(dir, 'scheduler', 'scheduler_config.json'), readFileSync(join(model, 'scheduler', 'scheduler_config.json')));
  const out = join(root, 'fixture-model.png');
  const r = cli('generate', '--model', dir, '--prompt', 'a cat', '--steps', '3', '--seed', '1', '--sampler', 'dpmpp-2m', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  const png = decode(readFileSync(out));
  const sampleSize = (JSON.parse(readFileSync(join(dir, 'unet', 'config.json'), 'utf8')) as { sample_size: number }).sample_size;
  assert.deepEqual([png.width, png.height], [sampleSize * 2, sampleSize * 2]); // native size: sample_size × VAE scale 2
});

const bad: [string, string[], RegExp][] = [
  ['missing model folder', ['--model', join(root, 'nope')], /model folder .*nope not found/],
  ['width not a multiple of 8', ['--width', '513'], /width must be a positive multiple of 8; got 513 \(try 512\)/],
  ['unknown sampler', ['--sampler', 'dpm3'], /argument 'dpm3' is invalid\. unknown sampler "dpm3"; use one of ddim, pndm, .* or an AUTOMATIC1111 name: Euler a/],
  ['negative steps', ['--steps', '-3'], /--steps must be an integer from 1 to 1000; got "-3"/],
  ['unknown option', ['--strenght', '0.5'], /unknown option '--strenght'/],
  ['bad ToDo factor', ['--todo', 'x2'], /--todo must be off, auto or a factor/],
  ['fractional ToDo factor with pooling', ['--todo', '1.5', '--todo-mode', 'avg-pool'], /factor 1\.5 is fractional, but mode "avg-pool" pools whole k x k windows/],
  ['ToDo and ToMe together', ['--todo', '2', '--tome', '0.5'], /--todo and --tome .*choose one/],
  ['ToMe ratio out of range', ['--tome', '0.9'], /--tome must be a number from 0 to 0\.75; got "0\.9"/],
  ['output path is a folder', ['--out', join(root, 'folder.png')], /cannot write .*folder\.png: it is a folder/],
  ['output folder missing', ['--out', join(root, 'absent-dir', 'x.png')], /folder .*absent-dir does not exist/],
  ['missing latents file', ['--latents', join(root, 'none.safetensors')], /none\.safetensors: file not found/],
  ['init image not a picture', ['--init-image', join(root, 'not-a-png.png')], /--init-image .*not-a-png\.png is not a readable image \(.*\); give a PNG, JPEG or WebP file/],
  ['init image missing', ['--init-image', join(root, 'absent.png')], /--init-image .*absent\.png: file not found/],
  ['strength above 1', ['--init-image', join(root, 'init.png'), '--strength', '1.5'], /--strength must be a number from 0 to 1; got "1\.5"/],
  ['strength without an init image', ['--strength', '0.5'], /strength applies to image-to-image: give an init image/],
  ['mask without an init image', ['--mask', join(root, 'init.png')], /a mask needs the image it masks/],
  ['hires scale off the grid', ['--width', '32', '--height', '48', '--hires-scale', '1.3'], /hires scale 1\.3 gives 41\.6x62\.4 px, .*the nearest valid scale is 1\.5 \(48x72\)/],
  ['unknown hires upscaler', ['--hires-scale', '2', '--hires-upscaler', 'esrgan'], /upscaler "esrgan" not found in no upscaler folder \(give --upscaler-dir/],
  ['named upscaler model absent', ['--hires-scale', '2', '--hires-upscaler', 'R-ESRGAN 4x+', '--upscaler-dir', root], /upscaler "R-ESRGAN 4x\+" not found in .*Put RealESRGAN_x4plus\.pth \(from https:\/\/github\.com\/xinntao\/.*\) in RealESRGAN\//],
];

test('bad input: clear message, non-zero exit, no file left behind', () => {
  mkdirSync(join(root, 'folder.png'));
  writeFileSync(join(root, 'not-a-png.png'), 'JFIF pretending to be a PNG');
  writeFileSync(join(root, 'init.png'), encode({ width: 32, height: 48, data: new Uint8Array(32 * 48 * 3).fill(128), channels: 3, depth: 8 }));
  const m = join(root, 'broken-model');
  cpSync(model, m, { recursive: true });
  writeFileSync(join(m, 'vae', 'config.json'), '{ not json');
  bad.push(['corrupt component config', ['--model', m], /vae: .*config\.json is not valid JSON/]);
  for (const [what, args, message] of bad) {
    const before = new Set(readdirSync(root));
    const withModel = args.includes('--model') ? [] : ['--model', model];
    const out = args.includes('--out') ? [] : ['--out', join(root, `bad-${what.replace(/\W+/g, '-')}.png`)];
    const r = cli('generate', '--prompt', 'x', '--steps', '2', ...withModel, ...out, ...args);
    assert.notEqual(r.code, 0, what);
    assert.match(r.stderr, message, what);
    const added = readdirSync(root).filter((f) => !before.has(f));
    assert.deepEqual(added, [], `${what}: nothing written`);
  }
});

test('img2img, inpainting and hires fix from the command line', () => {
  const init = join(root, 'cli-init.png');
  const mask = join(root, 'cli-mask.png');
  assert.equal(cli(...base, '--seed', '3', '--out', init).code, 0);
  // A mask of another size (16x24 for 32x48) is resized, not refused; its right half repaints.
  const m = new Uint8Array(16 * 24).map((_, p) => (p % 16 >= 8 ? 255 : 0));
  writeFileSync(mask, encode({ width: 16, height: 24, data: m, channels: 1, depth: 8 }));
  const out = join(root, 'cli-inpaint.png');
  const r = cli(...base, '--seed', '4', '--init-image', init, '--strength', '0.8', '--mask', mask, '--mask-blur', '0', '--out', out, '--json');
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { strength: number; mask: { blur: number; fill: string }; passes: { steps: number }[] };
  assert.deepEqual([summary.strength, summary.mask.blur, summary.mask.fill], [0.8, 0, 'original']);
  const a = decode(readFileSync(init)).data as Uint8Array;
  const b = decode(readFileSync(out)).data as Uint8Array;
  let keptDiff = 0;
  let paintedDiff = 0;
  for (let p = 0; p < 32 * 48; p++) {
    for (let c = 0; c < 3; c++) {
      const d = Math.abs(a[p * 3 + c]! - b[p * 3 + c]!);
      if (p % 32 < 4) keptDiff += d;
      if (p % 32 >= 20) paintedDiff += d;
    }
  }
  assert.equal(keptDiff, 0, 'unmasked pixels kept');
  assert.ok(paintedDiff > 0, 'masked pixels repainted');

  const hires = join(root, 'cli-hires.png');
  const h = cli(...base, '--seed', '4', '--hires-scale', '2', '--hires-steps', '2', '--hires-denoise', '0.5', '--hires-upscaler', 'lanczos', '--hires-todo', '2', '--out', hires);
  assert.equal(h.code, 0, h.stderr);
  const png = decode(readFileSync(hires));
  assert.deepEqual([png.width, png.height], [64, 96]);
  assert.match(readPngText(readFileSync(hires)).parameters!, /Size: 32x48, .*Denoising strength: 0\.5, Hires upscale: 2, Hires steps: 2, Hires upscaler: Lanczos, Hires ToDo factor: 2\.0/);
});

test('a JPEG init image at strength 0 and a hires fix at denoise 0 run; --from-png makes them again byte for byte with the rule they were made with', async () => {
  const made = join(root, 'for-jpeg.png');
  assert.equal(cli(...base, '--seed', '5', '--out', made).code, 0);
  const jpeg = join(root, 'init.jpg');
  writeFileSync(jpeg, await sharp(readFileSync(made)).jpeg({ quality: 90 }).toBuffer());
  for (const [name, flags] of [
    ['img2img', ['--init-image', jpeg, '--strength', '0', '--sampler', 'euler']],
    ['a1111 img2img', ['--init-image', jpeg, '--strength', '0.5', '--strength-rule', 'a1111', '--sampler', 'ddim']],
    ['hires', ['--hires-scale', '2', '--hires-denoise', '0', '--hires-steps', '2', '--sampler', 'euler']],
  ] as const) {
    const out = join(root, `zero-${name.replace(/\W/g, '-')}.png`);
    const r = cli(...base, '--seed', '6', ...flags, '--out', out, '--json');
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    const summary = JSON.parse(r.stdout) as { strengthRule: string; passes: { steps: number }[] };
    const params = readPngText(readFileSync(out)).parameters!;
    assert.match(params, name === 'a1111 img2img' ? /Denoising strength: 0\.5, Version/ : /Denoising strength: 0, .*Strength rule: diffusers, Version/, name);
    // Strength 0 with Euler: one step on the tail; the hires pass at denoise 0: none.
    if (name !== 'a1111 img2img') assert.deepEqual(summary.passes.map((p) => p.steps), name === 'hires' ? [4, 0] : [1], name);
    const again = join(root, `again-${name.replace(/\W/g, '-')}.png`);
    const init = flags[0] === '--init-image' ? ['--init-image', jpeg] : [];
    const r2 = cli('generate', '--model', model, '--from-png', out, ...init, '--out', again);
    assert.equal(r2.code, 0, `${name}: ${r2.stderr}`);
    assert.deepEqual(readFileSync(again), readFileSync(out), `${name}: the same bytes`);
  }
});

test('the README command form works: `npx todo-sd` runs the built command (its file is executable)', () => {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const r = spawnSync('npx', ['--no-install', 'todo-sd', '--version'], { cwd: repoRoot, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), pkg.version);
});

test('--json-events: every line on stderr is an event (phases, steps of both passes, done), --json keeps stdout to the summary; errors are events too', () => {
  const out = join(root, 'events.png');
  const r = cli(...base, '--seed', '5', '--hires-scale', '2', '--hires-steps', '2', '--out', out, '--json', '--json-events');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((JSON.parse(r.stdout) as { files: string[] }).files, [out]);
  const events = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { event: string; at: number; phase?: string; state?: string; pass?: number; files?: string[] });
  assert.ok(events.every((e, i) => i === 0 || e.at >= events[i - 1]!.at), 'times only grow');
  const phases = events.filter((e) => e.event === 'phase');
  for (const p of ['load:unet', 'session:unet', 'encode:prompt', 'decode:vae']) assert.ok(phases.some((e) => e.phase === p && e.state === 'end'), p);
  const steps = events.filter((e) => e.event === 'step');
  assert.deepEqual([...new Set(steps.map((e) => e.pass))], [1, 2]);
  // The U-Net session at the hires size is made between the passes, and said.
  const secondSession = events.map((e) => `${e.phase} ${e.state}`).lastIndexOf('session:unet start');
  assert.ok(secondSession > steps.findIndex((e) => e.pass === 1) && secondSession < events.findIndex((e) => e.pass === 2));
  const done = events.at(-1)!;
  assert.equal(done.event, 'done');
  assert.deepEqual(done.files, [out]);

  const bad = cli(...base, '--width', '36', '--out', join(root, 'never.png'), '--json-events');
  assert.equal(bad.code, 1);
  const last = JSON.parse(bad.stderr.trim().split('\n').at(-1)!) as { event: string; message: string };
  assert.deepEqual(last.event, 'error');
  assert.match(last.message, /width must be a positive multiple of \d+; got 36/);
  assert.equal(existsSync(join(root, 'never.png')), false);
});
