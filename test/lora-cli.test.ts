import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import { readPngText } from '../src/index.js';
import { fixture, runCli } from './helpers.js';

interface Case {
  name: string;
  png: string;
  lora: string;
  lora_scale: number;
  args: Record<string, string | number>;
}

const root = mkdtempSync(join(tmpdir(), 'todo-sd-lora-cli-'));
const cases = (JSON.parse(readFileSync(fixture('lora', 'cases.json'), 'utf8')) as { cases: Case[] }).cases;

function compare(file: string, ref: string): { maxDiff: number; psnr: number } {
  const a = decode(readFileSync(file)).data as Uint8Array;
  const b = decode(readFileSync(ref)).data as Uint8Array;
  assert.equal(a.length, b.length);
  let maxDiff = 0;
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    maxDiff = Math.max(maxDiff, d);
    se += d * d;
  }
  return { maxDiff, psnr: se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / a.length)) };
}

test('lora fixture has the four end-to-end cases', () => assert.equal(cases.length, 4));

for (const c of cases) {
  test(`${c.name}: generate --lora FILE:${c.lora_scale} reproduces diffusers' picture`, () => {
    const out = join(root, `${c.name}.png`);
    const args = Object.entries(c.args).flatMap(([k, v]) => [`--${k}`, String(v)]);
    const r = runCli(root, 'generate', ...args, '--lora', `${fixture('lora', c.lora)}:${c.lora_scale}`, '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const { maxDiff, psnr } = compare(out, fixture('lora', c.png));
    assert.ok(maxDiff <= 3 && psnr >= 40, `max |diff| ${maxDiff}, PSNR ${psnr.toFixed(1)} dB`);
    const name = c.lora.replace('.safetensors', '');
    const params = readPngText(readFileSync(out)).parameters!;
    assert.equal(params.split('\n')[0], `${c.args.prompt}<lora:${name}:${c.lora_scale}>`);
    assert.match(params, new RegExp(`Lora hashes: "${name}: [0-9a-f]{12}"`));
  });
}
