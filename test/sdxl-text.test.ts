import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadTextEncoder, loadTokenizer, loadVAE, SafetensorsFile } from '../src/index.js';
import { fixture, readTensor, relL2 } from './helpers.js';

const io = (): string => fixture('sdxl-tiny', 'io.safetensors');
const prompts = (): string[] => (JSON.parse(readFileSync(fixture('sdxl-tiny', 'case.json'), 'utf8')) as { te_prompts: string[] }).te_prompts;

test('sdxl-tiny: both tokenizers give diffusers\' ids (tokenizer_2 pads with "!" = 0 and splits "!" off)', async () => {
  const f = SafetensorsFile.open(io());
  for (const [component, key] of [
    ['tokenizer', 'te_input_ids'],
    ['tokenizer_2', 'te2_input_ids'],
  ] as const) {
    const tok = await loadTokenizer(fixture('sdxl-tiny'), { component });
    const ids = prompts().flatMap((p) => tok.encode(p));
    assert.deepEqual(ids, Array.from(f.readInt64(key), Number), component);
  }
});

test('sdxl-tiny: text encoders give transformers\' penultimate hidden states and projected pooled output', async () => {
  const f = SafetensorsFile.open(io());
  const te1 = await loadTextEncoder(fixture('sdxl-tiny'));
  const te2 = await loadTextEncoder(fixture('sdxl-tiny'), { component: 'text_encoder_2' });
  const out1 = await te1.forwardHiddenStates({ data: f.readInt64('te_input_ids'), dims: [2, 77] });
  const out2 = await te2.forwardHiddenStates({ data: f.readInt64('te2_input_ids'), dims: [2, 77] });
  const checks = [
    [out1.hiddenStates, 'te1_hidden_penultimate'],
    [out2.hiddenStates, 'te2_hidden_penultimate'],
    [out2.textEmbeds!, 'te2_text_embeds'],
  ] as const;
  for (const [got, key] of checks) {
    const ref = readTensor(io(), key);
    assert.deepEqual(got.dims, ref.dims, key);
    const err = relL2(got.data, ref.data);
    assert.ok(err <= 1e-4, `${key}: relative L2 error ${err}`);
  }
  assert.equal(out1.textEmbeds, undefined, 'CLIPTextModel has no projection');
  // clip skip 2 takes the layer before: a different tensor of the same shape.
  const skipped = await te2.forwardHiddenStates({ data: f.readInt64('te2_input_ids'), dims: [2, 77] }, { clipSkip: 2 });
  assert.ok(relL2(skipped.hiddenStates.data, out2.hiddenStates.data) > 1e-3);
  assert.ok(relL2(skipped.textEmbeds!.data, out2.textEmbeds!.data) < 1e-6, 'the pooled output always uses the last layer');
  await assert.rejects(te2.forwardHiddenStates({ data: f.readInt64('te2_input_ids'), dims: [2, 77] }, { clipSkip: 3 }), /clip skip must be an integer from 1 to 2/);
  await te1.dispose();
  await te2.dispose();
});

test('sdxl-tiny: VAE decode matches diffusers; scaling factor 0.13025 read from the config', async () => {
  const vae = await loadVAE(fixture('sdxl-tiny'));
  assert.equal(vae.config.scalingFactor, 0.13025);
  const out = await vae.decode(readTensor(io(), 'vae_latents'));
  const ref = readTensor(io(), 'vae_decoded');
  assert.deepEqual(out.dims, ref.dims);
  const err = relL2(out.data, ref.data);
  assert.ok(err <= 1e-4, `relative L2 error ${err}`);
  await vae.dispose();
});
