/**
 * AUTOMATIC1111's prompt editing (modules/prompt_parser.py
 * `get_learned_conditioning_prompt_schedules`): `[from:to:when]`, `[to:when]`, `[from::when]`
 * and alternation `[a|b]` turn one prompt into a list of plain prompts, each used up to a step.
 *
 * A1111 parses with a lark grammar; this is a recursive-descent parser for the same grammar:
 *   start: (prompt | /[][():]/+)*
 *   prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
 *   emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
 *   scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
 *   alternate: "[" prompt ("|" [prompt])+ "]"
 *   plain: /([^\\\[\]():|]|\\.)+/
 * Emphasis brackets are kept as text (parsePromptAttention reads them later). A prompt the
 * grammar rejects (a `|` outside brackets, a trailing lone `\`) is used as it is for every step.
 */

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'group'; open: string; parts: Node[][]; close: string }
  | { kind: 'scheduled'; before: Node[]; after: Node[]; when: string }
  | { kind: 'alternate'; options: Node[][] };

/** One entry of a schedule: `prompt` applies up to and including step `endAt` (1-based, as A1111 counts). */
export interface ScheduledPrompt {
  endAt: number;
  prompt: string;
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/;
const PLAIN = /^([^\\[\]():|]|\\.)+/u;
const WHITESPACE = /^\s+/u;

class Parser {
  pos = 0;
  constructor(private readonly s: string) {}

  /** `prompt`: items until a character it cannot take; never fails. */
  prompt(): Node[] {
    const nodes: Node[] = [];
    for (;;) {
      const rest = this.s.slice(this.pos);
      const plain = PLAIN.exec(rest);
      if (plain) {
        nodes.push({ kind: 'text', text: plain[0] });
        this.pos += plain[0].length;
        continue;
      }
      const start = this.pos;
      const node = rest[0] === '(' ? this.round() : rest[0] === '[' ? this.square() : null;
      if (node === null) {
        this.pos = start;
        return nodes;
      }
      nodes.push(node);
    }
  }

  private eat(ch: string): boolean {
    if (this.s[this.pos] !== ch) return false;
    this.pos++;
    return true;
  }

  private round(): Node | null {
    this.pos++;
    const first = this.prompt();
    if (this.eat(')')) return { kind: 'group', open: '(', parts: [first], close: ')' };
    if (!this.eat(':')) return null;
    const second = this.prompt();
    return this.eat(')') ? { kind: 'group', open: '(', parts: [first, second], close: ')' } : null;
  }

  private square(): Node | null {
    this.pos++;
    const first = this.prompt();
    if (this.eat(']')) return { kind: 'group', open: '[', parts: [first], close: ']' };
    if (this.s[this.pos] === '|') {
      const options = [first];
      while (this.eat('|')) options.push(this.prompt());
      return this.eat(']') ? { kind: 'alternate', options } : null;
    }
    if (!this.eat(':')) return null;
    const afterColon = this.pos;
    const when = this.number();
    if (when !== null) return { kind: 'scheduled', before: [], after: first, when };
    this.pos = afterColon;
    const second = this.prompt();
    if (!this.eat(':')) return null;
    const when2 = this.number();
    return when2 === null ? null : { kind: 'scheduled', before: first, after: second, when: when2 };
  }

  /** `[WHITESPACE] NUMBER [WHITESPACE] "]"`, or null (position unspecified). */
  private number(): string | null {
    this.skipSpace();
    const m = NUMBER.exec(this.s.slice(this.pos));
    if (!m) return null;
    this.pos += m[0].length;
    this.skipSpace();
    return this.eat(']') ? m[0] : null;
  }

  private skipSpace(): void {
    const m = WHITESPACE.exec(this.s.slice(this.pos));
    if (m) this.pos += m[0].length;
  }

  /** `start`: prompts, with stray brackets and colons kept as text; null where the grammar fails. */
  start(): Node[] | null {
    const nodes: Node[] = [];
    while (this.pos < this.s.length) {
      nodes.push(...this.prompt());
      const ch = this.s[this.pos];
      if (ch === undefined) break;
      if (!'[]():'.includes(ch)) return null;
      nodes.push({ kind: 'text', text: ch });
      this.pos++;
    }
    return nodes;
  }
}

/**
 * Where the schedule's numbers count from. In a hires fix's second pass A1111 offsets them:
 * integers count from the end of the first pass, fractions from 1.0 (`[a:b:1.5]` switches
 * halfway through the second pass).
 */
interface Offsets {
  int: number;
  float: number;
}

/** The step at which a `scheduled` node switches, as A1111 computes it (0 or less: never before). */
function switchStep(when: string, steps: number, o: Offsets): number {
  const v = Number(when);
  return Math.min(steps, Math.trunc(when.includes('.') ? (v - o.float) * steps : v - o.int));
}

function collectSteps(nodes: Node[], steps: number, o: Offsets, out: Set<number>): void {
  for (const n of nodes) {
    if (n.kind === 'group') n.parts.forEach((p) => collectSteps(p, steps, o, out));
    else if (n.kind === 'alternate') {
      for (let s = 1; s <= steps; s++) out.add(s);
      n.options.forEach((option) => collectSteps(option, steps, o, out));
    } else if (n.kind === 'scheduled') {
      const at = switchStep(n.when, steps, o);
      if (at >= 1) out.add(at);
      collectSteps(n.before, steps, o, out);
      collectSteps(n.after, steps, o, out);
    }
  }
}

function textAt(nodes: Node[], step: number, steps: number, o: Offsets): string {
  return nodes
    .map((n) => {
      switch (n.kind) {
        case 'text':
          return n.text;
        case 'group':
          return n.open + n.parts.map((p) => textAt(p, step, steps, o)).join(':') + n.close;
        case 'alternate':
          return textAt(n.options[(step - 1) % n.options.length]!, step, steps, o);
        case 'scheduled':
          return textAt(step <= switchStep(n.when, steps, o) ? n.before : n.after, step, steps, o);
      }
    })
    .join('');
}

/**
 * The plain prompts `prompt` stands for over `steps` sampling steps, in order of `endAt`; the
 * last one ends at `steps`. A prompt without editing syntax gives one entry, itself. For a hires
 * fix's second pass, `firstPassSteps` is the first pass's step count (A1111's offsets).
 */
export function promptSchedule(prompt: string, steps: number, firstPassSteps?: number): ScheduledPrompt[] {
  const tree = new Parser(prompt).start();
  if (tree === null) return [{ endAt: steps, prompt }];
  const o: Offsets = firstPassSteps === undefined ? { int: 0, float: 0 } : { int: firstPassSteps, float: 1 };
  const ends = new Set([steps]);
  collectSteps(tree, steps, o, ends);
  return [...ends].sort((a, b) => a - b).map((endAt) => ({ endAt, prompt: textAt(tree, endAt, steps, o) }));
}

/**
 * The schedule entry in force at sampling step `index` (0-based): the first whose `endAt` is at
 * least `index`. This is A1111's `reconstruct_cond_batch` rule, so `[a:b:0.5]` over 20 steps uses
 * `a` for steps 0–10 and `b` for 11–19, as A1111 does.
 */
export function entryAt(schedule: readonly ScheduledPrompt[], index: number): number {
  const i = schedule.findIndex((e) => index <= e.endAt);
  return i === -1 ? schedule.length - 1 : i;
}
