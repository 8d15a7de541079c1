/** What the pipeline keeps in memory between and within generations, where the machine is small for the model. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import { BUILTIN_MODEL_DIR, sessionStarts, StableDiffusion } from '../src/index.js';

let pipe: StableDiffusion;
before(async () => {
  pipe = await StableDiffusion.load(BUILTIN_MODEL_DIR);
});
after(() => pipe.dispose());

const starts = (component: string): number => sessionStarts()[component]?.count ?? 0;

test('text encoders keep their session between generations where the U-Net leaves room, and close it after encoding where it does not (SDXL in fp32 on 24 GiB)', async () => {
  const o = { prompt: 'a red kite', width: 32, height: 32, steps: 2, sampler: 'ddim' as const, seed: 1 };
  assert.equal(pipe.textEncodersYield(), false, 'the built-in U-Net is small');
  await pipe.generate(o);
  const kept = starts('text_encoder');
  await pipe.generate(o);
  assert.equal(starts('text_encoder') - kept, 0);
  // A U-Net whose starting session takes more than 60% of memory.
  const unet = pipe.unet as { sessionWeightBytes: () => number };
  const real = unet.sessionWeightBytes.bind(pipe.unet);
  unet.sessionWeightBytes = () => 0.31 * totalmem();
  try {
    assert.equal(pipe.textEncodersYield(), true);
    const first = await pipe.generate(o);
    const yielded = starts('text_encoder');
    const second = await pipe.generate(o);
    assert.equal(starts('text_encoder') - yielded, 1, 'opened again for the next encoding');
    assert.deepEqual(second.images[0]!.data, first.images[0]!.data);
  } finally {
    unet.sessionWeightBytes = real;
  }
});
