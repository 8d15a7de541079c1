import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import { readPngText, writeRandomModel, writeSafetensors, randn } from '../src/index.js';
import { fixture, runCli } from './helpers.js';

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
  ['unknown option', ['--strength', '0.5'], /unknown option '--strength'/],
  ['bad ToDo factor', ['--todo', 'x2'], /--todo must be off, auto or a factor/],
  ['fractional ToDo factor with pooling', ['--todo', '1.5', '--todo-mode', 'avg-pool'], /factor 1\.5 is fractional, but mode "avg-pool" pools whole k x k windows/],
  ['ToDo and ToMe together', ['--todo', '2', '--tome', '0.5'], /--todo and --tome .*choose one/],
  ['ToMe ratio out of range', ['--tome', '0.9'], /--tome must be a number from 0 to 0\.75; got "0\.9"/],
  ['output path is a folder', ['--out', join(root, 'folder.png')], /cannot write .*folder\.png: it is a folder/],
  ['output folder missing', ['--out', join(root, 'absent-dir', 'x.png')], /folder .*absent-dir does not exist/],
  ['missing latents file', ['--latents', join(root, 'none.safetensors')], /none\.safetensors: file not found/],
];

test('bad input: clear message, non-zero exit, no file left behind', () => {
  mkdirSync(join(root, 'folder.png'));
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
