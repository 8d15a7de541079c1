/**
 * AUTOMATIC1111's emphasis syntax (modules/prompt_parser.py `parse_prompt_attention`), token for
 * token: `(x)` ×1.1, `[x]` ÷1.1, `(x:w)` ×w, escapes, `BREAK`, brackets left open closed at the end.
 */
import { UserError } from '../errors.js';

/** A1111's `re_attention`, alternative for alternative (the order decides which one matches). */
const ATTENTION = /\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()[\]:]+|:/gu;

/**
 * A1111's `re_break` (`\s*\bBREAK\b\s*`). Python's `\b` is Unicode-aware (`ÜBREAKé` is one word),
 * JavaScript's is ASCII-only, so the word boundary is spelled out with Unicode classes.
 */
const BREAK = /\s*(?<![\p{L}\p{N}_])BREAK(?![\p{L}\p{N}_])\s*/u;

const ROUND = 1.1;
const SQUARE = 1 / 1.1;

/**
 * The prompt as `[text, weight]` fragments, exactly as A1111's `parse_prompt_attention` returns
 * them; `BREAK` is the pair `['BREAK', -1]` (times the weights of brackets around it). Never
 * fails on unbalanced brackets; throws only on a weight that is not a number (`(a:1.2.3)`),
 * where A1111 raises too.
 */
export function parsePromptAttention(text: string): [string, number][] {
  const res: [string, number][] = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiplyRange = (start: number, multiplier: number): void => {
    for (let p = start; p < res.length; p++) res[p]![1] *= multiplier;
  };

  for (const m of text.matchAll(ATTENTION)) {
    const token = m[0];
    const weight = m[1];
    if (token.startsWith('\\')) res.push([token.slice(1), 1.0]);
    else if (token === '(') round.push(res.length);
    else if (token === '[') square.push(res.length);
    else if (weight !== undefined && round.length > 0) multiplyRange(round.pop()!, parseWeight(weight, token));
    else if (token === ')' && round.length > 0) multiplyRange(round.pop()!, ROUND);
    else if (token === ']' && square.length > 0) multiplyRange(square.pop()!, SQUARE);
    else {
      token.split(BREAK).forEach((part, i) => {
        if (i > 0) res.push(['BREAK', -1]);
        res.push([part, 1.0]);
      });
    }
  }
  for (const pos of round) multiplyRange(pos, ROUND);
  for (const pos of square) multiplyRange(pos, SQUARE);
  if (res.length === 0) return [['', 1.0]];

  // Runs of exactly equal weights become one fragment.
  let i = 0;
  while (i + 1 < res.length) {
    if (res[i]![1] === res[i + 1]![1]) {
      res[i]![0] += res[i + 1]![0];
      res.splice(i + 1, 1);
    } else i++;
  }
  return res;
}

/** Python's float() on `[+-]?[.\d]+`: `.5` and `5.` are numbers, `1.2.3` and `.` are not. */
function parseWeight(s: string, token: string): number {
  if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(s)) {
    throw new UserError(`prompt: the emphasis weight in "${token}" is not a number; write it like (word:1.2), or escape the brackets as \\( \\)`);
  }
  return Number(s);
}
