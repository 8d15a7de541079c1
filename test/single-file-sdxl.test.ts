import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadUNet, StableDiffusion } from '../src/index.js';
import { fixture, readTensor, relL2 } from './helpers.js';

test('single-file/sdxl-tiny-file: the SGM checkpoint U-Net (text_time) matches diffusers', async () => {
  const io = fixture('single-file', 'checks', 'sdxl-tiny-file', 'io.safetensors');
  const unet = await loadUNet(fixture('single-file', 'sdxl-tiny.safetensors'));
  const added = { textEmbeds: readTensor(io, 'text_embeds'), timeIds: readTensor(io, 'time_ids') };
  const out = await unet.forward(readTensor(io, 'sample'), readTensor(io, 'timestep').data[0]!, readTensor(io, 'encoder_hidden_states'), added);
  const ref = readTensor(io, 'out_full');
  assert.deepEqual(out.dims, ref.dims);
  assert.ok(relL2(out.data, ref.data) <= 1e-4, `relative L2 error ${relL2(out.data, ref.data)}`);
  await unet.dispose();
});

test('single-file/sdxl-tiny: the SDXL pipeline from one file, tokenized as A1111 does (`!` is text, tokenizer_2 pads with 0)', async () => {
  const pipe = await StableDiffusion.load(fixture('single-file', 'sdxl-tiny.safetensors'));
  assert.equal(pipe.family, 'sdxl');
  assert.equal(pipe.schedulerConfig._class_name, 'EulerDiscreteScheduler');
  const [tok1, tok2] = pipe.sdxl!.tokenizers;
  assert.ok(tok2.encode('a fox!').includes(256), 'open_clip BPE: "!" is 256');
  assert.equal(tok2.encode('a fox').at(-1), 0, 'tokenizer_2 pads with id 0');
  assert.equal(tok1.encode('a fox').at(-1), 49407, 'tokenizer pads with the end token');
  const { images } = await pipe.generate({ prompt: 'a fox!', width: 64, height: 64, steps: 2, seed: 1 });
  assert.equal(images[0]!.width, 64);
  await pipe.dispose();
});
