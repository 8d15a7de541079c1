import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { StableDiffusion, type StepInfo } from '../src/index.js';
import { sharedDir } from './helpers.js';

const model = join(sharedDir, 'models', 'tiny-photo');

test('the pipeline takes A1111 sampler names and counts Heun steps as diffusers does', async () => {
  const pipe = await StableDiffusion.load(model);
  const base = { prompt: 'a red barn', width: 32, height: 32, steps: 3, seed: 4 };
  const named = await pipe.generate({ ...base, sampler: 'DPM++ 2M Karras' });
  assert.equal(named.settings.sampler, 'dpmpp-2m');
  assert.equal(named.settings.karras, true);
  assert.match(named.images[0]!.parameters, /Sampler: DPM\+\+ 2M Karras/);
  const ours = await pipe.generate({ ...base, sampler: 'dpmpp-2m', karras: true });
  assert.deepEqual(ours.images[0]!.data, named.images[0]!.data);

  const steps: StepInfo[] = [];
  const heun = await pipe.generate({ ...base, sampler: 'Heun' }, { onStep: (s) => steps.push(s) });
  const denoise = steps.filter((s) => s.phase === 'denoise');
  assert.deepEqual(denoise.map((s) => [s.step, s.total]), [[1, 3], [2, 3], [3, 3]]);
  assert.equal(heun.settings.sampler, 'heun');
  await assert.rejects(pipe.generate({ ...base, sampler: 'DPM++ 7M' }), /unknown sampler "DPM\+\+ 7M"/);
  await assert.rejects(pipe.generate({ ...base, promptSyntax: 'markdown' as 'plain' }), /promptSyntax must be one of a1111, plain; got "markdown"/);
  await pipe.dispose();
});
