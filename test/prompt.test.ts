import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import { ClipTextEncoder } from '../src/models/clip-text.js';
import { encodeWeighted, entryAt, padToLength, parsePromptAttention, promptChunks, PromptConditioning, promptSchedule } from '../src/prompt/index.js';
import { loadTokenizer } from '../src/tokenizer/clip.js';
import type { IntTensor, Tensor } from '../src/tensor.js';
import { fixture, readTensor, relL2, runCli, sharedDir } from './helpers.js';

interface CondCase {
  name: string;
  prompt: string;
  tokens: number[][];
  multipliers: number[][];
}
interface Cases {
  parse: { prompt: string; expected: [string, number][] }[];
  cond: CondCase[];
  cases: { name: string; png: string; args: Record<string, string | number> }[];
}

const dir = fixture('prompt-attention');
const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as Cases;
const condFile = join(dir, 'cond.safetensors');
const model = join(sharedDir, 'models', 'tiny-photo');

test('parsePromptAttention gives A1111 parse_prompt_attention output on every fixture prompt', () => {
  assert.equal(cases.parse.length, 25);
  for (const c of cases.parse) {
    const got = parsePromptAttention(c.prompt);
    assert.deepEqual(got.map(([t]) => t), c.expected.map(([t]) => t), c.prompt);
    got.forEach(([, w], i) => assert.ok(Math.abs(w - c.expected[i]![1]) <= 1e-6, `${c.prompt}: weight ${w} vs ${c.expected[i]![1]}`));
  }
});

test('parsePromptAttention: unbalanced brackets never throw; a weight that is no number is a clear error', () => {
  for (const p of ['((((', '))))', ']]][[[', '(a:', '(:)', '[a|b', 'x\\', '(a:1.2', '[[a]:1.2)']) assert.doesNotThrow(() => parsePromptAttention(p), p);
  assert.deepEqual(parsePromptAttention('((a'), [['a', 1.1 * 1.1]]);
  assert.throws(() => parsePromptAttention('(a:1.2.3)'), /weight in ":1\.2\.3\)" is not a number/);
});

test('A1111 chunks: tokens and weights per chunk equal the fixture (BREAK, comma backtrack, hard split)', async () => {
  const tokenizer = await loadTokenizer(model);
  for (const c of cases.cond) {
    const chunks = promptChunks(c.prompt, tokenizer);
    assert.deepEqual(chunks.map((ch) => ch.tokens), c.tokens, c.name);
    assert.deepEqual(chunks.map((ch) => ch.multipliers), c.multipliers, c.name);
  }
});

test('A1111 conditioning matches the fixture to 1e-4; an unweighted short prompt is the plain CLIP encoding', async () => {
  const tokenizer = await loadTokenizer(model);
  const encoder = await ClipTextEncoder.load(model);
  const encode = (ids: IntTensor): Promise<Tensor> => encoder.forward(ids);
  const encoders = [{ tokenizer, encode: async (ids: IntTensor) => ({ hidden: await encode(ids) }) }];
  for (const c of cases.cond) {
    const [z] = (await encodeWeighted([c.prompt], encoders)).map((e) => e.hidden);
    const ref = readTensor(condFile, c.name);
    assert.deepEqual(z!.dims, [1, ...ref.dims], c.name);
    const err = relL2(z!.data, ref.data);
    assert.ok(err < 1e-4, `${c.name}: relative L2 ${err}`);
  }
  const short = cases.cond.find((c) => c.name === 'short')!;
  const ids = Int32Array.from(tokenizer.encode(short.prompt));
  const plain = await encode({ data: ids, dims: [1, 77] });
  const [weighted] = (await encodeWeighted([short.prompt], encoders)).map((e) => e.hidden);
  assert.deepEqual(weighted!.data, plain.data);
  await encoder.dispose();
});

test('prompt and negative are padded with the empty prompt to one length, negative half first', async () => {
  const tokenizer = await loadTokenizer(model);
  const encoder = await ClipTextEncoder.load(model);
  const encode = (ids: IntTensor): Promise<Tensor> => encoder.forward(ids);
  const encoders = [{ tokenizer, encode: async (ids: IntTensor) => ({ hidden: await encode(ids) }) }];
  const e2e = cases.cases[0]!;
  const request = { prompt: String(e2e.args.prompt), negativePrompt: String(e2e.args['negative-prompt']), steps: 10, batch: 2, guided: true, syntax: 'a1111' as const };
  const cond = await PromptConditioning.build(request, encoders);
  const t = cond.at(0);
  assert.deepEqual(t.dims, [4, 154, 32]);
  const row = 154 * 32;
  const neg = readTensor(condFile, 'e2e0-ddim-s17.negative_prompt_embeds');
  const pos = readTensor(condFile, 'e2e0-ddim-s17.prompt_embeds');
  [neg, neg, pos, pos].forEach((ref, i) => assert.ok(relL2(t.data.subarray(i * row, (i + 1) * row), ref.data) < 1e-4, `row ${i}`));
  assert.equal(cond.scheduled, false);
  const [empty] = (await encodeWeighted([''], encoders)).map((e) => e.hidden);
  assert.deepEqual(padToLength(empty!, 154, empty!).data.subarray(77 * 32), empty!.data);
  assert.throws(() => padToLength(empty!, 100, empty!), /77 tokens cannot be padded to 100/);
  await encoder.dispose();
});

test('prompt editing schedules follow A1111: [from:to:when], [to:when], [from::when], alternation, fallback', () => {
  const at = (p: string, steps: number): [number, string][] => promptSchedule(p, steps).map((e) => [e.endAt, e.prompt]);
  assert.deepEqual(at('a [b:c:0.5] d', 5), [[2, 'a b d'], [5, 'a c d']]);
  assert.deepEqual(at('[to:2]', 5), [[2, ''], [5, 'to']]);
  assert.deepEqual(at('[from::2]', 5), [[2, 'from'], [5, '']]);
  assert.deepEqual(at('[a|b|c] x', 4), [[1, 'a x'], [2, 'b x'], [3, 'c x'], [4, 'a x']]);
  assert.deepEqual(at('[(red:1.2):blue:3]', 4), [[3, '(red:1.2)'], [4, 'blue']]);
  assert.deepEqual(at('[a:b:0.9] x', 2), [[1, 'a x'], [2, 'b x']]);
  assert.deepEqual(at('[a:b:0.1] x', 5), [[5, 'b x']]); // switches before step 1: never before
  // Emphasis, stray brackets and the grammar's failures stay the prompt itself.
  for (const p of ['a (b:1.2) [c] (unbalanced', 'a | b', '[a (b:c:0.5)', 'end \\', 'x [a:b:] y']) assert.deepEqual(at(p, 5), [[5, p]], p);
  // The cases of A1111's doctests (modules/prompt_parser.py), results derived from its grammar.
  const g = (p: string): [number, string][] => at(p, 10);
  assert.deepEqual(g('a [b:3]'), [[3, 'a '], [10, 'a b']]);
  assert.deepEqual(g('a [b: 3]'), [[3, 'a '], [10, 'a b']]);
  assert.deepEqual(g('a [[[b]]:2]'), [[2, 'a '], [10, 'a [[b]]']]);
  assert.deepEqual(g('[(a:2):3]'), [[3, ''], [10, '(a:2)']]);
  assert.deepEqual(g('a [b : c : 1] d'), [[1, 'a b  d'], [10, 'a  c  d']]);
  assert.deepEqual(g('a[b:[c:d:2]:1]e'), [[1, 'abe'], [2, 'ace'], [10, 'ade']]);
  assert.deepEqual(g('a [unbalanced'), [[10, 'a [unbalanced']]);
  assert.deepEqual(g('a [b:.5] c'), [[5, 'a  c'], [10, 'a b c']]);
  assert.deepEqual(g('((a][:b:c [d:3]'), [[3, '((a][:b:c '], [10, '((a][:b:c d']]);
  assert.deepEqual(g('[fe|||]male').slice(0, 5), [[1, 'female'], [2, 'male'], [3, 'male'], [4, 'male'], [5, 'female']]);
  // Hires fix second pass: integers count from the first pass's end, fractions from 1.0.
  assert.deepEqual(promptSchedule('a [b:.5] c', 10, 10), [{ endAt: 10, prompt: 'a b c' }]);
  assert.deepEqual(promptSchedule('a [b:1.5] c', 10, 10).map((e) => [e.endAt, e.prompt]), [[5, 'a  c'], [10, 'a b c']]);
  assert.deepEqual(promptSchedule('a [b:13] c', 10, 10).map((e) => [e.endAt, e.prompt]), [[3, 'a  c'], [10, 'a b c']]);
  const s = promptSchedule('[a:b:0.5]', 20);
  assert.deepEqual([0, 10, 11, 19].map((i) => entryAt(s, i)), [0, 0, 1, 1]);
});

test('prompt editing: the conditioning follows the schedule step by step', async () => {
  const tokenizer = await loadTokenizer(model);
  const encoder = await ClipTextEncoder.load(model);
  const encode = (ids: IntTensor): Promise<Tensor> => encoder.forward(ids);
  const encoders = [{ tokenizer, encode: async (ids: IntTensor) => ({ hidden: await encode(ids) }) }];
  const request = { prompt: '[a cat:a dog:0.5] on a mat', negativePrompt: '', steps: 4, batch: 1, guided: false, syntax: 'a1111' as const };
  const cond = await PromptConditioning.build(request, encoders);
  assert.equal(cond.scheduled, true);
  const [cat, dog] = (await encodeWeighted(['a cat on a mat', 'a dog on a mat'], encoders)).map((e) => e.hidden);
  // A1111: the entry ending at step 2 serves sampling steps 0, 1 and 2.
  for (const [step, want] of [[0, cat], [2, cat], [3, dog]] as const) assert.deepEqual(cond.at(step).data, want!.data, `step ${step}`);
  await encoder.dispose();
});

test('the CLI reproduces the A1111-conditioned fixture image; --prompt-syntax plain does not', () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-prompt-'));
  const e2e = cases.cases[0]!;
  const a = e2e.args;
  const flags = ['generate', '--model', model, '-p', String(a.prompt), '-n', String(a['negative-prompt']), '-W', String(a.width), '-H', String(a.height)];
  flags.push('--steps', String(a.steps), '--sampler', String(a.sampler), '--cfg', String(a.cfg), '--seed', String(a.seed));
  const ref = decode(readFileSync(join(dir, e2e.png))).data as Uint8Array;
  const compare = (file: string): { max: number; psnr: number } => {
    const got = decode(readFileSync(file)).data as Uint8Array;
    let max = 0;
    let se = 0;
    got.forEach((v, i) => {
      const d = Math.abs(v - ref[i]!);
      max = Math.max(max, d);
      se += d * d;
    });
    return { max, psnr: 10 * Math.log10((255 * 255) / (se / got.length)) };
  };
  const out = join(root, 'a1111.png');
  const r = runCli(root, ...flags, '-o', out);
  assert.equal(r.code, 0, r.stderr);
  const m = compare(out);
  assert.ok(m.max <= 3 && m.psnr >= 40, `max ${m.max}, PSNR ${m.psnr}`);
  const plainOut = join(root, 'plain.png');
  const p = runCli(root, ...flags, '--prompt-syntax', 'plain', '-o', plainOut);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /only 75 fit; dropped the last/);
  assert.ok(compare(plainOut).psnr < 35);
});

test('CLI: unbalanced brackets generate an image; a weight that is no number fails clearly with nothing written', () => {
  const root = mkdtempSync(join(tmpdir(), 'todo-sd-prompt-bad-'));
  const gen = (prompt: string, out: string): ReturnType<typeof runCli> =>
    runCli(root, 'generate', '--model', model, '-p', prompt, '--steps', '1', '-W', '32', '-H', '32', '--seed', '1', '-o', join(root, out));
  const ok = gen('((unbalanced [prompt] with a stray ) and [a|b', 'ok.png');
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(existsSync(join(root, 'ok.png')));
  const bad = gen('a (cat:1.2.3)', 'bad.png');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /the emphasis weight in ":1\.2\.3\)" is not a number/);
  assert.ok(!existsSync(join(root, 'bad.png')));
});
