import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import sharp from 'sharp';
import { readPngText, SafetensorsFile, writeRandomUpscaler, type EsrganConfig } from '../src/index.js';
import { runCli } from './helpers.js';
import { tensorsOf, writeTorchFile } from './torch-writer.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-upscale-cli-'));
const models = join(root, 'models');
const tiny: EsrganConfig = { architecture: 'ESRGAN', inChannels: 3, outChannels: 3, features: 8, blocks: 1, growth: 4, upsamples: 2, unshuffle: 1, scale: 4 };
mkdirSync(join(models, 'RealESRGAN'), { recursive: true });
writeRandomUpscaler(join(root, 'x4.safetensors'), tiny, 1);
writeTorchFile(join(models, 'RealESRGAN', 'RealESRGAN_x4plus.pth'), tensorsOf(SafetensorsFile.open(join(root, 'x4.safetensors'))), { format: 'zip', wrap: 'params_ema' });

const size = (file: string): [number, number] => {
  const d = decode(readFileSync(file));
  return [d.width, d.height];
};

test('todo-sd upscale: a model by A1111 name or file, Lanczos, to a size with crop, a JPEG; parameters kept, postprocessing recorded; bad input fails cleanly', async () => {
  const src = join(root, 'in.png');
  assert.equal(runCli(root, 'generate', '-p', 'a fox', '-W', '32', '-H', '24', '--steps', '1', '--seed', '1', '-o', src).code, 0);
  const up = join(root, 'up.png');
  const r = runCli(root, 'upscale', '-m', 'R-ESRGAN 4x+', '--upscaler-dir', models, src, '-o', up, '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(size(up), [128, 96]);
  const text = readPngText(readFileSync(up));
  assert.equal(text.postprocessing, 'Postprocess upscale by: 4, Postprocess upscaler: R-ESRGAN 4x+');
  assert.match(text.parameters!, /^a fox\nSteps: 1/);
  assert.equal((JSON.parse(r.stdout) as { images: { width: number }[] }).images[0]!.width, 128);
  // The same model given as a file, at another scale (A1111: the model's 4x, then Lanczos down to 2x).
  assert.equal(runCli(root, 'upscale', '-m', join(root, 'x4.safetensors'), '--scale', '2', src, '-o', join(root, 'file.png')).code, 0);
  assert.deepEqual(size(join(root, 'file.png')), [64, 48]);
  const crop = join(root, 'crop.png');
  assert.equal(runCli(root, 'upscale', '-m', 'lanczos', '-W', '100', '-H', '50', '--crop', src, '-o', crop).code, 0);
  assert.deepEqual(size(crop), [100, 50]);
  assert.equal(readPngText(readFileSync(crop)).postprocessing, 'Postprocess upscale to: 100x50, Postprocess crop to: 100x50, Postprocess upscaler: Lanczos');
  const jpeg = join(root, 'in.jpg');
  writeFileSync(jpeg, await sharp(src).jpeg().toBuffer());
  assert.equal(runCli(root, 'upscale', '-m', 'lanczos', '--scale', '2', jpeg, '-o', join(root, 'jpeg.png')).code, 0);
  assert.deepEqual(size(join(root, 'jpeg.png')), [64, 48]);
  const before = readdirSync(root).length;
  for (const [args, message] of [
    [['-m', '4x-UltraSharp', '--upscaler-dir', models, src], /upscaler "4x-UltraSharp" not found in .*available: R-ESRGAN 4x\+/],
    [['-m', 'lanczos', '-W', '64', src], /--width and --height go together/],
    [['-m', join(root, 'in.png'), src], /in\.png: (not a PyTorch file|.*not safetensors)/],
    [['-m', 'lanczos', join(root, 'missing.png')], /input .*missing\.png: file not found/],
  ] as const) {
    const bad = runCli(root, 'upscale', ...args, '-o', join(root, 'bad.png'));
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, message);
  }
  assert.equal(readdirSync(root).length, before, 'nothing written');
});

test('generate: --hires-upscaler names a model; --from-png finds it again in --upscaler-dir and makes the same bytes', () => {
  const made = join(root, 'hires.png');
  const r = runCli(root, 'generate', '-p', 'a lighthouse', '-W', '32', '-H', '32', '--steps', '2', '--seed', '3', '--hires-scale', '2', '--hires-steps', '2', '--hires-upscaler', 'R-ESRGAN 4x+', '--upscaler-dir', models, '--tile', '24', '--tile-overlap', '8', '-o', made);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(size(made), [64, 64]);
  assert.match(readPngText(readFileSync(made)).parameters!, /Hires upscaler: R-ESRGAN 4x\+/);
  const again = join(root, 'again.png');
  const a = runCli(root, 'generate', '--from-png', made, '--upscaler-dir', models, '--tile', '24', '--tile-overlap', '8', '-o', again);
  assert.equal(a.code, 0, a.stderr);
  assert.doesNotMatch(a.stderr, /not applied/);
  assert.deepEqual(readFileSync(again), readFileSync(made));
  const without = runCli(root, 'generate', '--from-png', made, '-o', join(root, 'latent.png'));
  assert.equal(without.code, 0, without.stderr);
  assert.match(without.stderr, /settings not applied: Hires upscaler \("R-ESRGAN 4x\+" is an upscaler model: give the folder that holds it \(--upscaler-dir\)/);
  assert.ok(existsSync(join(root, 'latent.png')));
});
