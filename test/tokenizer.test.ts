import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipTokenizer, cleanText, loadTokenizer } from '../src/tokenizer/clip.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const sharedRoot = process.env.TODO_SD_SHARED ?? join(repoRoot, '..', 'shared');
const fixtureDir = (variant: 'sd1' | 'sd2') => join(sharedRoot, 'fixtures', `clip-tokenizer-${variant}`);

interface Case {
  prompt: string;
  input_ids: number[];
}

function readCases(variant: 'sd1' | 'sd2'): Case[] {
  const path = join(fixtureDir(variant), 'cases.json');
  // A missing fixture must fail the suite, not skip it.
  assert.ok(existsSync(path), `fixture missing: ${path}`);
  const cases = JSON.parse(readFileSync(path, 'utf8')) as Case[];
  assert.ok(cases.length > 0, `${path} holds no cases`);
  return cases;
}

const tokenizers = new Map<string, Promise<ClipTokenizer>>();
function tokenizer(variant: 'sd1' | 'sd2'): Promise<ClipTokenizer> {
  if (!tokenizers.has(variant)) tokenizers.set(variant, loadTokenizer(fixtureDir(variant), { onWarning: () => {} }));
  return tokenizers.get(variant)!;
}

for (const variant of ['sd1', 'sd2'] as const) {
  // sd2: transformers' CLIPTokenizer, as diffusers uses it (the pad token "!" is split off as id 0).
  test(`every ${variant} case matches the reference tokenizer`, async () => {
    const tok = await tokenizer(variant);
    for (const c of readCases(variant)) {
      assert.deepEqual(tok.encode(c.prompt), c.input_ids, `prompt ${JSON.stringify(c.prompt)}`);
    }
  });
}

test('pad ids come from the model config: 49407 for SD 1.x, 0 for SD 2.x', async () => {
  const [sd1, sd2] = [await tokenizer('sd1'), await tokenizer('sd2')];
  assert.equal(sd1.padId, 49407);
  assert.equal(sd2.padId, 0);
  for (const tok of [sd1, sd2]) {
    assert.equal(tok.bosId, 49406);
    assert.equal(tok.eosId, 49407);
    assert.equal(tok.modelMaxLength, 77);
  }
  assert.deepEqual((await tokenizer('sd2')).encode('').slice(0, 4), [49406, 49407, 0, 0]);
});

test('specialPad: false tokenizes "!" as OpenAI / open_clip do (256), padding still with the pad id', async () => {
  const diffusers = await tokenizer('sd2');
  const openai = await loadTokenizer(fixtureDir('sd2'), { specialPad: false });
  const prompt = 'wow!! a cat!';
  assert.deepEqual(diffusers.tokenize(prompt), [2781, 0, 0, 320, 2368, 0]);
  assert.deepEqual(openai.tokenize(prompt), [2781, 748, 320, 2368, 256]);
  assert.deepEqual(openai.encode(prompt).slice(5, 8), [256, 49407, 0]);
  // A pad token equal to the end token (SD 1.x) is never split off.
  assert.deepEqual((await tokenizer('sd1')).tokenize(prompt), openai.tokenize(prompt));
});

test('loads from the model folder or from its tokenizer/ folder alike', async () => {
  const fromTokenizerDir = await loadTokenizer(join(fixtureDir('sd1'), 'tokenizer'));
  const fromModelDir = await tokenizer('sd1');
  const prompt = 'a red fox in the snow';
  assert.deepEqual(fromTokenizerDir.encode(prompt), fromModelDir.encode(prompt));
});

test('long prompts keep 75 tokens and warn with the number dropped', async () => {
  const warnings: string[] = [];
  const tok = await loadTokenizer(fixtureDir('sd1'), { onWarning: (m) => warnings.push(m) });
  const prompt = 'a '.repeat(80); // "a" is one token (320)
  assert.equal(tok.tokenize(prompt).length, 80);
  const ids = tok.encode(prompt);
  assert.equal(ids.length, 77);
  assert.deepEqual(ids, [49406, ...new Array<number>(75).fill(320), 49407]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /80 tokens/);
  assert.match(warnings[0]!, /dropped the last 5 tokens/);

  warnings.length = 0;
  tok.encode('a '.repeat(75));
  assert.deepEqual(warnings, [], 'exactly 75 tokens fit without a warning');
});

test('text is lower-cased, whitespace collapsed and trimmed', async () => {
  const tok = await tokenizer('sd1');
  assert.equal(cleanText('  A\tPainting\n\nOF  a\u00a0FOX  '), 'a painting of a fox');
  assert.deepEqual(tok.encode('  A\tPainting\n\nOF  a\u00a0FOX  '), tok.encode('a painting of a fox'));
  assert.deepEqual(tok.tokenize('   \n\t '), []);
});

test('clean-up follows OpenAI: html entities, curly quotes, ligatures, full-width forms', async () => {
  assert.equal(cleanText('Tom &amp; Jerry &lt;3 &#39;x&#39; &amp;amp;'), 'tom & jerry <3 \'x\' &');
  assert.equal(cleanText('Don\u2019t \u201cstop\u201d'), 'don\'t "stop"');
  assert.equal(cleanText('\ufb01ne \uff26\uff35\uff2c\uff2c\u3000width'), 'fine full width');
  assert.equal(cleanText('caf\u0065\u0301'), 'caf\u00e9', 'NFC');
  assert.equal(cleanText('red\u001b[31m text\u0007'), 'red text', 'terminal escapes and control characters');
  // Reference ids from OpenAI's simple_tokenizer (with ftfy) for a prompt that needs the clean-up.
  const tok = await tokenizer('sd1');
  assert.deepEqual(tok.tokenize("Don\u2019t stop \u201cbelieving\u201d \u2014 it's the HERO's journey\u2026"), [
    847, 713, 1691, 257, 19551, 257, 2005, 585, 568, 518, 3756, 568, 3749, 959,
  ]);
});

test('decode turns ids back into words', async () => {
  const tok = await tokenizer('sd1');
  assert.equal(tok.decode(tok.tokenize('A Painting of a FOX, in the style of Hokusai!')), 'a painting of a fox , in the style of hokusai !');
});

test('a missing folder or file is a clear error naming the path', async () => {
  const missing = join(tmpdir(), 'todo-sd-no-such-model');
  await assert.rejects(loadTokenizer(missing), (e: Error) => e.message.includes(missing) && /model folder .* not found/.test(e.message));

  const dir = await mkdtemp(join(tmpdir(), 'todo-sd-tok-'));
  try {
    await assert.rejects(loadTokenizer(dir), (e: Error) => e.message.includes(dir) && /vocab\.json/.test(e.message));

    await cp(join(fixtureDir('sd1'), 'tokenizer'), dir, { recursive: true });
    await rm(join(dir, 'merges.txt'));
    await assert.rejects(loadTokenizer(dir), (e: Error) => e.message.includes(join(dir, 'merges.txt')) && /not found/.test(e.message));

    await cp(join(fixtureDir('sd1'), 'tokenizer', 'merges.txt'), join(dir, 'merges.txt'));
    await rm(join(dir, 'special_tokens_map.json'));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 77 }));
    await assert.rejects(loadTokenizer(dir), (e: Error) => /no pad_token/.test(e.message) && e.message.includes(join(dir, 'tokenizer_config.json')));

    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: { content: '!' } }));
    assert.equal((await loadTokenizer(dir)).padId, 0, 'AddedToken-style pad token from tokenizer_config.json');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
