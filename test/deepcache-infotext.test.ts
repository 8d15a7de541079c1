import { test } from 'node:test';
import assert from 'node:assert/strict';
import { a1111Parameters, optionsFromParameters, parseParameters, type ParameterSource } from '../src/index.js';
import { deepCacheFromInfotext, deepCacheInfotext } from '../src/pipeline/deepcache-infotext.js';
import type { ResolvedDeepCache } from '../src/pipeline/deepcache.js';

const dc = (interval: number, layer = 0, block = 0, start = 0): ResolvedDeepCache => ({ interval, layer, block, start });

test("written under the DeepCache extension's pass key, ours for the rest; Hires keys where the second pass differs", () => {
  assert.deepEqual(deepCacheInfotext(undefined, undefined), []);
  assert.deepEqual(deepCacheInfotext(dc(3), undefined), [
    ['DeepCache pass', 'both passes'],
    ['DeepCache interval', '3'],
    ['DeepCache start', '0.0'],
  ]);
  assert.deepEqual(deepCacheInfotext(dc(3, 1, 2, 0.4), { second: dc(3, 1, 2, 0.4) }), [
    ['DeepCache pass', 'both passes'],
    ['DeepCache interval', '3'],
    ['DeepCache layer', '1'],
    ['DeepCache block', '2'],
    ['DeepCache start', '0.4'],
    ['Hires DeepCache start', '0.4'],
  ]);
  assert.deepEqual(deepCacheInfotext(dc(3), { second: dc(2, 1) }).slice(3), [
    ['Hires DeepCache interval', '2'],
    ['Hires DeepCache layer', '1'],
  ]);
  assert.deepEqual(deepCacheInfotext(dc(3), { second: undefined }).slice(3), [['Hires DeepCache interval', '1']]);
  assert.deepEqual(deepCacheInfotext(undefined, { second: dc(4, 0, 1, 0.5) }), [
    ['DeepCache pass', 'second pass'],
    ['DeepCache interval', '4'],
    ['DeepCache block', '1'],
    ['Hires DeepCache start', '0.5'],
  ]);
});

test('read back: every pass combination round-trips; A1111 infotexts fill in the extension defaults', () => {
  const cases: [ResolvedDeepCache | undefined, ResolvedDeepCache | undefined | 'no hires'][] = [
    [dc(3, 1, 0, 0.25), 'no hires'],
    [dc(3, 1, 0, 0.25), dc(3, 1, 0, 0.25)],
    [dc(3), dc(5, 0, 1, 0)],
    [dc(2, 0, 0, 0.5), undefined],
    [undefined, dc(4, 1, 1, 0.3)],
    [undefined, undefined],
  ];
  for (const [first, second] of cases) {
    const hires = second === 'no hires' ? undefined : { second };
    const back = deepCacheFromInfotext(Object.fromEntries(deepCacheInfotext(first, hires)), hires !== undefined);
    assert.deepEqual(back.first, first, JSON.stringify([first, second]));
    if (hires) assert.deepEqual(back.second ?? false, second ?? false, JSON.stringify([first, second]));
  }
  // The extension reads only `DeepCache pass`; the rest comes from its settings' defaults (refresh every 5 steps, level 0, after 40%, 0% in hires).
  assert.deepEqual(deepCacheFromInfotext({ 'DeepCache pass': 'both passes' }, true), { first: dc(5, 0, 0, 0.4), second: dc(5, 0, 0, 0) });
  assert.deepEqual(deepCacheFromInfotext({ 'DeepCache pass': 'second pass' }, false), {});
  assert.deepEqual(deepCacheFromInfotext({ 'DeepCache pass': 'disable' }, true), {});
  assert.deepEqual(deepCacheFromInfotext({ Steps: '20' }, false), {});
  assert.throws(() => deepCacheFromInfotext({ 'DeepCache pass': 'sometimes' }, false), /"DeepCache pass: sometimes" is not one of disable, second pass, both passes/);
  assert.throws(() => deepCacheFromInfotext({ 'DeepCache interval': 'three' }, false), /"DeepCache interval: three" is not a number/);
});

const source: ParameterSource = {
  prompt: 'a fox',
  negativePrompt: '',
  steps: 20,
  sampler: 'euler',
  karras: false,
  cfg: 7,
  seed: 1,
  width: 512,
  height: 512,
  model: 'sd15',
  clipSkip: 1,
  attention: { method: 'todo', factor: 2, mode: 'nearest-exact', stopAt: 1 },
  attentionLevels: [0, 1, 2, 3],
  latent: [64, 64],
};

test('PNG parameters: DeepCache and NGMS beside ToDo and the hires fix, read back into generate options', () => {
  const text = a1111Parameters({
    ...source,
    deepcache: dc(3, 0, 0, 0.2),
    sMinUncond: 1.5,
    sMinUncondAll: true,
    hires: { scale: 2, steps: 10, denoise: 0.5, upscaler: 'latent' },
    passes: [{ attention: source.attention, deepcache: dc(3, 0, 0, 0.2) }, { attention: source.attention, deepcache: dc(2, 1, 0, 0) }],
  });
  assert.match(text, /ToDo disable after: 1\.0, DeepCache pass: both passes, DeepCache interval: 3, DeepCache start: 0\.2, Hires DeepCache interval: 2, Hires DeepCache layer: 1, NGMS: 1\.5, NGMS all steps: True, /);
  const { options, notApplied } = optionsFromParameters(parseParameters(text), source.attentionLevels);
  assert.deepEqual(notApplied, []);
  assert.deepEqual(options.deepcache, dc(3, 0, 0, 0.2));
  assert.deepEqual(options.hires?.deepcache, dc(2, 1, 0, 0));
  assert.equal(options.sMinUncond, 1.5);
  assert.equal(options.sMinUncondAll, true);
  // An A1111 infotext with NGMS only; bad values are errors.
  const a1111 = optionsFromParameters(parseParameters('a fox\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, NGMS: 2'), source.attentionLevels);
  assert.equal(a1111.options.sMinUncond, 2);
  assert.equal(a1111.options.deepcache, undefined);
  assert.throws(() => optionsFromParameters(parseParameters('x\nSteps: 2, Seed: 1, NGMS all steps: maybe'), []), /"NGMS all steps: maybe" is not True or False/);
});
