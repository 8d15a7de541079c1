import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caseFlags, comparePngs, readCases } from './conformance-images.js';
import { fixture, runCli, sharedDir } from './helpers.js';

// Text-to-image on tiny-photo through the command line, against diffusers' StableDiffusionPipeline.
const root = mkdtempSync(join(tmpdir(), 'todo-sd-e2e-'));
const model = join(sharedDir, 'models', 'tiny-photo');
const cases = readCases(fixture('e2e-sd1', 'cases.json'));

test('e2e-sd1 has its cases', () => {
  assert.equal(cases.length, 12);
});

for (const c of cases) {
  test(`e2e-sd1 ${c.name}: max |diff| <= 3, PSNR >= 40 dB`, () => {
    const out = join(root, c.png);
    const r = runCli(root, 'generate', '--model', model, ...caseFlags(c.args), '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const { maxDiff, psnr } = comparePngs(out, fixture('e2e-sd1', c.png));
    assert.ok(maxDiff <= 3, `max |diff| ${maxDiff}`);
    assert.ok(psnr >= 40, `PSNR ${psnr.toFixed(1)} dB`);
  });
}
