/**
 * CLIP's byte-level BPE tokenizer, as OpenAI's `simple_tokenizer.py` and transformers'
 * (slow) `CLIPTokenizer` implement it, loaded from the `vocab.json` + `merges.txt` pair that
 * diffusers model folders carry.
 *
 * Text clean-up follows OpenAI: ftfy's `fix_text`, `html.unescape` twice, whitespace
 * collapsing, lower-casing. ftfy is reproduced for its character-level fixes (HTML entities,
 * C1 controls, Latin ligatures, full-width forms, curly quotes, line breaks, terminal
 * escapes, control characters, NFC); its mojibake repair, a statistical heuristic, is not.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { findComponent, readJson } from '../io/model-folder.js';

export interface ClipTokenizerOptions {
  /** Receives the truncation warning. Defaults to `console.warn`. */
  onWarning?: (message: string) => void;
  /**
   * true (default): as transformers' CLIPTokenizer, which diffusers uses: a pad token that is
   * not the end token (`!` in SD 2.x and SDXL's `tokenizer_2`) is a special token, split off
   * wherever it occurs in a prompt and encoded as its own id (0). false: as OpenAI's and
   * open_clip's tokenizers (AUTOMATIC1111, ComfyUI, hence single-file checkpoints): `!` is
   * ordinary text (`!</w>` = 256); only the padding uses the pad id.
   */
  specialPad?: boolean;
  /** The pad token, instead of the folder's (single-file checkpoints carry no tokenizer files). */
  padToken?: string;
}

/** What a tokenizer is built from, as read from a diffusers `tokenizer/` folder. */
export interface ClipTokenizerData {
  /** token string → id (vocab.json). */
  vocab: ReadonlyMap<string, number>;
  /** Merge rules in rank order (merges.txt without its header). */
  merges: readonly (readonly [string, string])[];
  bosToken: string;
  eosToken: string;
  padToken: string;
  unkToken: string;
  /** Sequence length including the start and end tokens (77 for CLIP). */
  modelMaxLength: number;
}

const END_OF_WORD = '</w>';
const START_TOKEN = '<|startoftext|>';
const END_TOKEN = '<|endoftext|>';
/** OpenAI's BPE file lists more merges than CLIP's vocabulary holds; both references keep the first 48894. */
const MAX_MERGES = 49152 - 256 - 2;
/** The BPE cache only saves work on repeated words; bound it for long-running processes. */
const MAX_CACHE_ENTRIES = 50_000;

/**
 * `\s` as Python's `regex` module reads it in the reference patterns: Unicode White_Space
 * (JavaScript's `\s` differs: it adds U+FEFF and lacks U+0085).
 */
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${WS}]+`, 'gu');
const PRE_TOKEN = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${WS}\\p{L}\\p{N}]+`,
  'giu',
);

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly modelMaxLength: number;

  private readonly vocab: ReadonlyMap<string, number>;
  private readonly idToToken = new Map<number, string>();
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, readonly number[]>();
  private readonly onWarning: (message: string) => void;
  /** The pad token when it is split off as a special token, else undefined. */
  private readonly specialPadToken?: string;

  constructor(data: ClipTokenizerData, options: ClipTokenizerOptions = {}) {
    this.vocab = data.vocab;
    for (const [token, id] of data.vocab) this.idToToken.set(id, token);
    data.merges.forEach(([a, b], rank) => this.ranks.set(`${a} ${b}`, rank));
    const id = (role: string, token: string): number => {
      const v = data.vocab.get(token);
      if (v === undefined) throw new Error(`CLIP tokenizer: ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      return v;
    };
    this.bosId = id('bos', data.bosToken);
    this.eosId = id('eos', data.eosToken);
    this.padId = id('pad', data.padToken);
    this.unkId = id('unk', data.unkToken);
    if (!Number.isSafeInteger(data.modelMaxLength) || data.modelMaxLength < 2) {
      throw new Error(`CLIP tokenizer: model_max_length must be an integer >= 2, got ${data.modelMaxLength}`);
    }
    this.modelMaxLength = data.modelMaxLength;
    this.onWarning = options.onWarning ?? ((message) => console.warn(message));
    const ordinary = [data.bosToken, data.eosToken, data.unkToken];
    if ((options.specialPad ?? true) && !ordinary.includes(data.padToken)) this.specialPadToken = data.padToken;
  }

  /** Token ids of the prompt without start/end tokens and without truncation. */
  tokenize(prompt: string): number[] {
    if (this.specialPadToken === undefined) return this.tokenizeText(prompt);
    // transformers splits the raw text on special tokens first, then cleans and encodes each piece.
    return prompt.split(this.specialPadToken).flatMap((piece, i) => (i > 0 ? [this.padId, ...this.tokenizeText(piece)] : this.tokenizeText(piece)));
  }

  private tokenizeText(text: string): number[] {
    const ids: number[] = [];
    for (const match of cleanText(text).matchAll(PRE_TOKEN)) ids.push(...this.bpe(byteEncode(match[0])));
    return ids;
  }

  /**
   * Exactly `modelMaxLength` ids: start, at most `modelMaxLength - 2` prompt tokens, end,
   * padding. Longer prompts are cut, with a warning naming how many tokens were dropped.
   */
  encode(prompt: string): number[] {
    const tokens = this.tokenize(prompt);
    const room = this.modelMaxLength - 2;
    if (tokens.length > room) {
      const dropped = tokens.length - room;
      this.onWarning(
        `CLIP tokenizer: the prompt has ${tokens.length} tokens but only ${room} fit; ` +
          `dropped the last ${dropped} token${dropped === 1 ? '' : 's'}: "${this.decode(tokens.slice(room))}"`,
      );
    }
    const ids = [this.bosId, ...tokens.slice(0, room), this.eosId];
    while (ids.length < this.modelMaxLength) ids.push(this.padId);
    return ids;
  }

  /** Text of token ids, words separated by spaces (OpenAI's `decode`, trimmed). */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const token = this.idToToken.get(id);
      if (token === undefined) throw new Error(`CLIP tokenizer: id ${id} is not in the vocabulary`);
      const endsWord = token.endsWith(END_OF_WORD);
      for (const ch of endsWord ? token.slice(0, -END_OF_WORD.length) : token) {
        const b = BYTE_DECODER.get(ch);
        if (b === undefined) throw new Error(`CLIP tokenizer: token ${JSON.stringify(token)} (id ${id}) is not byte-level BPE`);
        bytes.push(b);
      }
      if (endsWord) bytes.push(0x20);
    }
    return new TextDecoder().decode(Uint8Array.from(bytes)).trim();
  }

  /** BPE of one pre-token (already byte-encoded): merge the best-ranked adjacent pair until none is left. */
  private bpe(token: string): readonly number[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    let ids: number[];
    if (token === START_TOKEN || token === END_TOKEN) {
      ids = [this.vocab.get(token) ?? this.unkId];
    } else {
      let word = [...token];
      word[word.length - 1] += END_OF_WORD;
      while (word.length > 1) {
        let best = Infinity;
        let first = '';
        let second = '';
        for (let i = 0; i + 1 < word.length; i++) {
          const rank = this.ranks.get(`${word[i]} ${word[i + 1]}`);
          if (rank !== undefined && rank < best) [best, first, second] = [rank, word[i]!, word[i + 1]!];
        }
        if (best === Infinity) break;
        const merged: string[] = [];
        for (let i = 0; i < word.length; i++) {
          if (word[i] === first && word[i + 1] === second) {
            merged.push(first + second);
            i++;
          } else {
            merged.push(word[i]!);
          }
        }
        word = merged;
      }
      ids = word.map((piece) => this.vocab.get(piece) ?? this.unkId);
    }
    if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.clear();
    this.cache.set(token, ids);
    return ids;
  }
}

/**
 * GPT-2's reversible byte → character map: printable Latin-1 bytes map to themselves,
 * the rest to U+0100 onwards, so that no byte becomes whitespace or a control character.
 */
const BYTE_ENCODER: readonly string[] = (() => {
  const table: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : next++);
  }
  return table;
})();
const BYTE_DECODER = new Map(BYTE_ENCODER.map((ch, b) => [ch, b]));
const utf8 = new TextEncoder();

function byteEncode(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_ENCODER[b]!;
  return out;
}

/** OpenAI's `whitespace_clean(basic_clean(text)).lower()`. */
export function cleanText(text: string): string {
  const fixed = htmlUnescape(htmlUnescape(fixText(text)));
  // Runs are single spaces now; strip only those (JavaScript's trim() has its own idea of \s).
  return fixed.replace(WHITESPACE_RUN, ' ').replace(/^ | $/g, '').toLowerCase();
}

// ------------------------------------------------------------------------------ clean-up

/** HTML 4's Latin-1 entity names, U+00A0 to U+00FF in order. */
const LATIN1_ENTITY_NAMES = (
  'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 ' +
  'acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml ' +
  'Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde ' +
  'Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute acirc atilde auml aring aelig ' +
  'ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide ' +
  'oslash ugrave uacute ucirc uuml yacute thorn yuml'
).split(' ');

/**
 * The named HTML entities decoded here: the part of Python's `html.entities.html5` that
 * shows up in prompts. `legacy` names are also recognised without `;`, as HTML5 (and
 * Python) do for the old Latin-1 ones.
 */
const ENTITIES = new Map<string, { char: string; legacy: boolean }>([
  ...LATIN1_ENTITY_NAMES.map((name, i) => [name, { char: String.fromCharCode(0xa0 + i), legacy: true }] as const),
  ...(
    [['amp', '&'], ['AMP', '&'], ['lt', '<'], ['LT', '<'], ['gt', '>'], ['GT', '>'], ['quot', '"'], ['QUOT', '"'],
      ['COPY', '\u00a9'], ['REG', '\u00ae']] as const
  ).map(([name, char]) => [name, { char, legacy: true }] as const),
  ...(
    [['apos', "'"], ['euro', '\u20ac'], ['trade', '\u2122'], ['TRADE', '\u2122'], ['hellip', '\u2026'],
      ['mdash', '\u2014'], ['ndash', '\u2013'], ['lsquo', '\u2018'], ['rsquo', '\u2019'], ['ldquo', '\u201c'],
      ['rdquo', '\u201d'], ['bull', '\u2022']] as const
  ).map(([name, char]) => [name, { char, legacy: false }] as const),
]);

function namedEntity(name: string, semicolon: boolean): string | undefined {
  const e = ENTITIES.get(name);
  return e && (semicolon || e.legacy) ? e.char : undefined;
}

/**
 * Windows-1252 for bytes 0x80-0x9F (undefined ones map to themselves, as in HTML5). Spelled
 * out because Node's TextDecoder treats the "windows-1252" label as Latin-1.
 */
const CP1252_C1 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';
const windows1252C1 = (code: number): string => CP1252_C1[code - 0x80]!;

/** Python's `html.unescape` rules for `&#NNN;` / `&#xHH;`. */
function numericEntity(num: number): string {
  if (num === 0 || (num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  if (num === 0x0d) return '\r';
  if (num >= 0x80 && num <= 0x9f) return windows1252C1(num);
  const invalid =
    (num >= 0x01 && num <= 0x08) ||
    num === 0x0b ||
    (num >= 0x0e && num <= 0x1f) ||
    num === 0x7f ||
    (num >= 0xfdd0 && num <= 0xfdef) ||
    (num & 0xfffe) === 0xfffe;
  return invalid ? '' : String.fromCodePoint(num);
}

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;

/** Python's `html.unescape`: numeric references, and named ones by longest known prefix. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (whole, ref: string) => {
    if (ref.startsWith('#')) {
      const hex = ref[1] === 'x' || ref[1] === 'X';
      return numericEntity(parseInt(ref.slice(hex ? 2 : 1).replace(';', ''), hex ? 16 : 10));
    }
    const semicolon = ref.endsWith(';');
    const full = namedEntity(semicolon ? ref.slice(0, -1) : ref, semicolon);
    if (full !== undefined) return full;
    for (let n = ref.length - 1; n > 1; n--) {
      const prefix = namedEntity(ref.slice(0, n), false);
      if (prefix !== undefined) return prefix + ref.slice(n);
    }
    return whole;
  });
}

/** ftfy's own entity pass: only complete `&name;` / `&#N;` forms. */
function ftfyUnescape(text: string): string {
  return text.replace(/&#?[0-9A-Za-z]{1,24};/g, (entity) => {
    if (entity.startsWith('&#')) {
      const out = htmlUnescape(entity);
      return out.includes(';') ? entity : out;
    }
    const name = entity.slice(1, -1);
    const char = namedEntity(name, true);
    if (char !== undefined) return char;
    // ftfy also reads all-caps spellings of lower-case names (&EACUTE; → É).
    const folded = name === name.toUpperCase() ? namedEntity(name.toLowerCase(), true) : undefined;
    return folded?.toUpperCase() ?? entity;
  });
}

const LIGATURES: Record<string, string> = {
  '\u0132': 'IJ', '\u0133': 'ij', '\u0149': '\u02bcn',
  '\u01f1': 'DZ', '\u01f2': 'Dz', '\u01f3': 'dz', '\u01c4': 'D\u017d', '\u01c5': 'D\u017e', '\u01c6': 'd\u017e',
  '\u01c7': 'LJ', '\u01c8': 'Lj', '\u01c9': 'lj', '\u01ca': 'NJ', '\u01cb': 'Nj', '\u01cc': 'nj',
  '\ufb00': 'ff', '\ufb01': 'fi', '\ufb02': 'fl', '\ufb03': 'ffi', '\ufb04': 'ffl', '\ufb05': '\u017ft', '\ufb06': 'st',
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');

/** One ftfy round, fixers in ftfy's order. */
function ftfyRound(text: string, unescape: boolean): string {
  let t = unescape ? ftfyUnescape(text) : text;
  t = t.replace(/[\x80-\x9f]/g, (c) => windows1252C1(c.charCodeAt(0)));
  t = t.replace(LIGATURE_RE, (c) => LIGATURES[c]!);
  // Full-/half-width forms to their usual width; the ideographic space to a space.
  t = t.replace(/[\uff01-\uffef]/g, (c) => c.normalize('NFKC')).replaceAll('\u3000', ' ');
  t = t.replace(/[\u02bc\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
  t = t.replace(/\r\n|[\r\u2028\u2029]/g, '\n'); // U+0085 became "…" in the C1 step
  /* eslint-disable no-control-regex -- removing control characters is the point */
  t = t.replace(/\x1b\[[\p{Nd};]*[a-zA-Z]/gu, ''); // ANSI terminal escapes
  t = t.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, '');
  /* eslint-enable no-control-regex */
  return t.normalize('NFC');
}

/**
 * ftfy's `fix_text` without mojibake repair: line by line, rounds of fixes until nothing
 * changes. As in ftfy, entity decoding stops from the first line containing `<` on, since
 * that text may be real HTML. (Lone surrogates need no fix: UTF-8 encoding already turns
 * them into U+FFFD, which is what ftfy would produce.)
 */
export function fixText(text: string): string {
  let unescape = true;
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  return lines
    .map((line) => {
      if (line.includes('<')) unescape = false;
      for (;;) {
        const fixed = ftfyRound(line, unescape);
        if (fixed === line) return fixed;
        line = fixed;
      }
    })
    .join('');
}

// ------------------------------------------------------------------------------ loading

const isFile = async (p: string): Promise<boolean> => (await stat(p).catch(() => undefined))?.isFile() ?? false;

/** Finds the folder holding vocab.json: `dir` itself or its `tokenizer/` subfolder. */
async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`CLIP tokenizer: cannot read ${path} (${code === 'ENOENT' ? 'file not found' : code ?? String(e)}); expected ${what}`);
  }
}

/** Special tokens are plain strings or serialised `AddedToken`s (`{ "content": ... }`). */
function tokenString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

export interface LoadTokenizerOptions extends ClipTokenizerOptions {
  /** The folder name in a model folder: `tokenizer` (default) or SDXL's `tokenizer_2`. */
  component?: string;
}

/**
 * Loads the tokenizer of a diffusers model (`dir` = the model folder or its `tokenizer/`
 * folder). Special tokens come from special_tokens_map.json, falling back to
 * tokenizer_config.json as transformers does, then to CLIP's defaults — except the pad
 * token, which differs between SD 1.x and 2.x and so must be stated by one of the two files.
 */
export async function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): Promise<ClipTokenizer> {
  const root = findComponent(dir, options.component ?? 'tokenizer', { configFile: 'vocab.json', needWeights: false }).folder;
  const vocabPath = join(root, 'vocab.json');
  const mergesPath = join(root, 'merges.txt');
  const configPath = join(root, 'tokenizer_config.json');
  const specialPath = join(root, 'special_tokens_map.json');

  const vocabJson = readJson(vocabPath, 'CLIP tokenizer vocabulary');
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(vocabJson)) {
    if (!Number.isSafeInteger(id)) throw new Error(`CLIP tokenizer: ${vocabPath}: id of ${JSON.stringify(token)} is not an integer`);
    vocab.set(token, id as number);
  }

  // As transformers: strip, split lines, skip the "#version" header, keep CLIP's merge count.
  const mergeLines = (await readText(mergesPath, 'the BPE merge list ("#version" header, then "a b" per line)'))
    .trim()
    .split('\n')
    .slice(1, 1 + MAX_MERGES);
  const merges = mergeLines.map((line, i): [string, string] => {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw new Error(`CLIP tokenizer: ${mergesPath} line ${i + 2} is not a pair of symbols: ${JSON.stringify(line)}`);
    return [parts[0]!, parts[1]!];
  });

  const config = (await isFile(configPath)) ? readJson(configPath, 'CLIP tokenizer settings') : {};
  const special = (await isFile(specialPath)) ? readJson(specialPath, 'CLIP tokenizer special tokens') : {};
  const pick = (key: string): string | undefined => tokenString(special[key]) ?? tokenString(config[key]);

  const padToken = options.padToken ?? pick('pad_token');
  if (padToken === undefined) {
    throw new Error(
      `CLIP tokenizer: no pad_token in ${specialPath} or ${configPath}; ` +
        'expected one of them to name it ("<|endoftext|>" for SD 1.x, "!" for SD 2.x)',
    );
  }
  const maxLength = config.model_max_length ?? 77;
  if (typeof maxLength !== 'number') throw new Error(`CLIP tokenizer: ${configPath}: model_max_length is not a number`);

  return new ClipTokenizer(
    {
      vocab,
      merges,
      bosToken: pick('bos_token') ?? START_TOKEN,
      eosToken: pick('eos_token') ?? END_TOKEN,
      unkToken: pick('unk_token') ?? END_TOKEN,
      padToken,
      modelMaxLength: maxLength,
    },
    options,
  );
}
