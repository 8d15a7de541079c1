import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_MODEL_DIR, StableDiffusion, type GenerateOptions } from '../src/index.js';
import { extractLoraTags } from '../src/lora/prompt-tags.js';
import { parseLoraOption } from '../src/cli/lora-option.js';
import { fixture, runCli } from './helpers.js';

test('<lora:…> tags: A1111 weights (te, unet, named), other tags removed too', () => {
  assert.deepEqual(extractLoraTags('a cat <lora:ink:0.7>, sitting<lora:x>'), {
    text: 'a cat , sitting',
    loras: [
      { name: 'ink', scale: 0.7 },
      { name: 'x', scale: 1 },
    ],
    ignored: [],
  });
  assert.deepEqual(extractLoraTags('<lora:a:0.5:0.25> <lora:b:unet=0.3:te=0.6> <hypernet:h:1>').loras, [
    { name: 'a', scale: 0.5, unetScale: 0.25 },
    { name: 'b', scale: 0.6, unetScale: 0.3 },
  ]);
  assert.deepEqual(extractLoraTags('<hypernet:h:1>dog').ignored, ['<hypernet:h:1>']);
  assert.equal(extractLoraTags('no tags <here> or <:x>').text, 'no tags <here> or <:x>');
  assert.throws(() => extractLoraTags('<lora:a:strong>'), /<lora:a:strong>: "strong" is not a number/);
});

const loraDir = mkdtempSync(join(tmpdir(), 'todo-sd-lora-dir-'));

test('a prompt tag is the same as the option: same image; the set changes per generation', async () => {
  copyFileSync(fixture('lora', 'lora-kohya.safetensors'), join(loraDir, 'ink.safetensors'));
  const pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
  const base: GenerateOptions = { prompt: 'a photo of a lighthouse', width: 32, height: 32, steps: 3, seed: 3, sampler: 'ddim' };
  const plain = await pipe.generate(base);
  const byTag = await pipe.generate({ ...base, prompt: 'a photo of a lighthouse <lora:ink:0.8>', loraDir });
  const byOption = await pipe.generate({ ...base, loras: [{ path: join(loraDir, 'ink.safetensors'), scale: 0.8 }] });
  const again = await pipe.generate(base);
  await pipe.dispose();
  assert.deepEqual(byTag.images[0]!.data, byOption.images[0]!.data);
  assert.notDeepEqual(byTag.images[0]!.data, plain.images[0]!.data);
  assert.deepEqual(again.images[0]!.data, plain.images[0]!.data, 'without the tag the LoRA is gone again');
  // The infotext keeps the tag in the prompt and names the LoRA as the tag does.
  const p = byTag.images[0]!.parameters;
  assert.equal(p.split('\n')[0], 'a photo of a lighthouse <lora:ink:0.8>');
  assert.match(p, /, Lora hashes: "ink: [0-9a-f]{12}", Version: todo-sd$/);
  // A LoRA from the options is recorded as a tag appended to the prompt, as A1111's "Add network to prompt" does.
  assert.equal(byOption.images[0]!.parameters.split('\n')[0], 'a photo of a lighthouse<lora:ink:0.8>');
  assert.match(byOption.images[0]!.parameters, /Lora hashes: "ink: /);
  assert.equal(byOption.settings.prompt, 'a photo of a lighthouse');
  assert.doesNotMatch(plain.images[0]!.parameters, /Lora hashes/);
  assert.deepEqual(byTag.settings.loras.map((l) => [l.name, l.scale]), [['ink', 0.8]]);
});

test('prompt tags: missing folder, missing file and names that leave the folder are clear errors', async () => {
  const pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
  const o = { prompt: 'x <lora:ink:1>', width: 32, height: 32, steps: 1 };
  await assert.rejects(pipe.generate(o), /no LoRA folder is set: pass --lora-dir/);
  await assert.rejects(pipe.generate({ ...o, prompt: 'x <lora:gone:1>', loraDir }), /gone\.safetensors not found/);
  await assert.rejects(pipe.generate({ ...o, prompt: 'x <lora:../ink:1>', loraDir }), /may not contain path separators/);
  await pipe.dispose();
});

test('CLI: bad --lora values and files exit non-zero with the reason; --lora-dir resolves tags', () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-lora-cli-err-'));
  const args = ['generate', '--prompt', 'a lighthouse', '--width', '32', '--height', '32', '--steps', '1', '--seed', '1'];
  let r = runCli(root, ...args, '--lora', 'x.safetensors:heavy');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--lora x\.safetensors:heavy: "heavy" after the last ':' is not a weight/);
  r = runCli(root, ...args, '--lora', join(root, 'missing.safetensors'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /missing\.safetensors: file not found/);
  r = runCli(root, ...args, '--lora', fixture('lora', 'io.safetensors'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /LoRA io\.safetensors: this is not a LoRA/);
  const out = join(root, 'tag.png');
  r = runCli(root, ...args, '--prompt', 'a lighthouse <lora:ink:0.5>', '--lora-dir', loraDir, '--out', out, '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((JSON.parse(r.stdout) as { loras: { name: string; scale: number }[] }).loras.map((l) => [l.name, l.scale]), [['ink', 0.5]]);
  assert.ok(readFileSync(out).length > 0);
});

test('--lora FILE[:W]: weight after the last colon, default 1, repeatable', () => {
  let specs = parseLoraOption('a.safetensors:0.8');
  specs = parseLoraOption('dir/b.safetensors', specs);
  specs = parseLoraOption('C:\\loras\\c.safetensors:-0.5', specs);
  assert.deepEqual(specs, [
    { path: 'a.safetensors', scale: 0.8 },
    { path: 'dir/b.safetensors', scale: 1 },
    { path: 'C:\\loras\\c.safetensors', scale: -0.5 },
  ]);
  assert.deepEqual(parseLoraOption('C:\\loras\\d.safetensors'), [{ path: 'C:\\loras\\d.safetensors', scale: 1 }]);
  assert.throws(() => parseLoraOption('a.safetensors:'), /"" after the last ':' is not a weight/);
  assert.deepEqual(parseLoraOption('a.ckpt:0.5'), [{ path: 'a.ckpt', scale: 0.5 }]);
});
