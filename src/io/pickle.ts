/**
 * A Python pickle reader (protocols 0 to 5) that never runs anything: every opcode that would
 * look up or call Python code (GLOBAL, STACK_GLOBAL, INST, OBJ, REDUCE, NEWOBJ, BUILD,
 * persistent ids) is handed to a policy, which either answers with a plain value or refuses.
 * Containers are only changed the way their own type allows (items into dicts, elements into
 * lists), as PyTorch's weights-only unpickler does. What a pickle may build is the policy's
 * business (torch-pickle.ts); this module only walks the opcodes.
 */
import { UserError } from '../errors.js';

export class PickleError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'PickleError';
  }
}

/** A Python tuple (lists are plain arrays). */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A Python dict (or OrderedDict, Counter): keys as the pickle gave them (strings, numbers, …). */
export class PyDict {
  readonly entries = new Map<unknown, unknown>();
}

export class PySet {
  constructor(readonly items: unknown[] = []) {}
}

/** What the opcodes that reach for Python code are allowed to produce. */
export interface UnpicklePolicy {
  /** GLOBAL, STACK_GLOBAL, INST, OBJ: the value `module.name` stands for; throws to refuse it. */
  global(module: string, name: string): unknown;
  /** REDUCE, INST, OBJ: calling `callable(*args)`. */
  call(callable: unknown, args: unknown[]): unknown;
  /** NEWOBJ, NEWOBJ_EX: `cls.__new__(cls, *args)`. */
  newObject(cls: unknown, args: unknown[]): unknown;
  /** BUILD: `obj.__setstate__(state)`, changing `obj` in place. */
  build(obj: unknown, state: unknown): void;
  /** PERSID, BINPERSID. */
  persistentLoad(pid: unknown): unknown;
}

/** Bytes on demand, from memory or from a file, so a pickle inside a larger file is read in place. */
export class ByteReader {
  pos: number;
  private chunk: Uint8Array = new Uint8Array(0);
  private chunkStart = 0;

  constructor(
    private readonly source: (pos: number, length: number) => Uint8Array,
    readonly size: number,
    start = 0,
  ) {
    this.pos = start;
  }

  static of(bytes: Uint8Array): ByteReader {
    return new ByteReader((pos, length) => bytes.subarray(pos, pos + length), bytes.length);
  }

  bytes(n: number): Uint8Array {
    if (!Number.isSafeInteger(n) || n < 0 || this.pos + n > this.size) {
      throw new PickleError(`the pickle wants ${n} bytes at byte ${this.pos} but the data ends at ${this.size}; it is truncated or corrupt`);
    }
    const at = this.pos - this.chunkStart;
    if (at < 0 || at + n > this.chunk.length) {
      this.chunk = this.source(this.pos, Math.min(this.size - this.pos, Math.max(n, 1 << 20)));
      this.chunkStart = this.pos;
    }
    const start = this.pos - this.chunkStart;
    this.pos += n;
    return this.chunk.subarray(start, start + n);
  }

  byte(): number {
    return this.bytes(1)[0]!;
  }

  /** Up to and without the next newline. */
  line(): string {
    const parts: number[] = [];
    for (let b = this.byte(); b !== 0x0a; b = this.byte()) {
      parts.push(b);
      if (parts.length > 1 << 16) throw new PickleError(`a text line of the pickle at byte ${this.pos} never ends; the data is corrupt`);
    }
    return Buffer.from(parts).toString('utf8');
  }

  uint(n: 1 | 2 | 4 | 8): number {
    const b = Buffer.from(this.bytes(n));
    if (n === 8) {
      const v = b.readBigUInt64LE(0);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PickleError(`a length of ${v} bytes in the pickle; the data is corrupt`);
      return Number(v);
    }
    return b.readUIntLE(0, n);
  }
}

const utf8 = new TextDecoder('utf-8');

/** Little-endian two's complement, as pickle's LONG1 / LONG4 store integers. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  if (bytes[bytes.length - 1]! & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function parseInt10(text: string): number | bigint {
  const t = text.trim().replace(/L$/, '');
  if (!/^[+-]?\d+$/.test(t)) throw new PickleError(`"${text}" is not an integer; the pickle is corrupt`);
  const v = BigInt(t);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** A protocol-0 string literal (STRING's Python repr, UNICODE's raw-unicode-escape). */
function unescape(text: string, quoted: boolean): string {
  let body = text;
  if (quoted) {
    const q = body[0];
    if ((q !== "'" && q !== '"') || body[body.length - 1] !== q || body.length < 2) throw new PickleError(`STRING opcode argument ${text} is not quoted`);
    body = body.slice(1, -1);
  }
  return body.replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (_, e: string) => {
    if (/^[xuU]/.test(e) && e.length > 1) return String.fromCodePoint(parseInt(e.slice(1), 16));
    return ({ n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"' } as Record<string, string>)[e] ?? `\\${e}`;
  });
}

/** Reads one pickle from `input` (up to its STOP opcode) and returns its value. */
export function unpickle(input: ByteReader, policy: UnpicklePolicy): unknown {
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();
  const pop = (): unknown => {
    if (stack.length === 0) throw new PickleError('the pickle pops an empty stack; it is corrupt');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) throw new PickleError('the pickle reads an empty stack; it is corrupt');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const outer = marks.pop();
    if (!outer) throw new PickleError('the pickle closes a MARK it never opened; it is corrupt');
    stack = outer;
    return items;
  };
  const memoGet = (i: number): unknown => {
    if (!memo.has(i)) throw new PickleError(`the pickle reads memo entry ${i}, which it never stored; it is corrupt`);
    return memo.get(i);
  };
  const tuple = (v: unknown, what: string): unknown[] => {
    if (!(v instanceof PyTuple)) throw new PickleError(`${what} needs a tuple of arguments; the pickle is corrupt`);
    return v.items;
  };
  const dict = (what: string): PyDict => {
    const d = top();
    if (!(d instanceof PyDict)) throw new PickleError(`${what} may only add items to a dict; the pickle tries another object`);
    return d;
  };
  const list = (what: string): unknown[] => {
    const l = top();
    if (!Array.isArray(l)) throw new PickleError(`${what} may only add elements to a list; the pickle tries another object`);
    return l;
  };
  const setItems = (d: PyDict, items: unknown[]): void => {
    if (items.length % 2) throw new PickleError('SETITEMS with an odd number of stack items; the pickle is corrupt');
    for (let i = 0; i < items.length; i += 2) d.entries.set(items[i], items[i + 1]);
  };
  /** Bytes after a little-endian length of `n` bytes. */
  const sized = (n: 1 | 4 | 8): Uint8Array => input.bytes(n === 1 ? input.byte() : input.uint(n));
  const str = (v: unknown, what: string): string => {
    if (typeof v !== 'string') throw new PickleError(`${what} needs strings; the pickle is corrupt`);
    return v;
  };

  for (;;) {
    const at = input.pos;
    const op = input.byte();
    switch (op) {
      case 0x80: {
        const proto = input.byte();
        if (proto > 5) throw new PickleError(`pickle protocol ${proto} is newer than any this reader knows (0 to 5)`);
        break;
      }
      case 0x95: // FRAME: a length hint only
        input.bytes(8);
        break;
      case 0x2e: // STOP
        if (marks.length) throw new PickleError('the pickle stops inside a MARK; it is corrupt');
        return pop();
      // --- stack and memo
      case 0x28: // MARK
        marks.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x70: // PUT
        memo.set(Number(parseInt10(input.line())), top());
        break;
      case 0x71: // BINPUT
        memo.set(input.byte(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(input.uint(4), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x67: // GET
        stack.push(memoGet(Number(parseInt10(input.line()))));
        break;
      case 0x68: // BINGET
        stack.push(memoGet(input.byte()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(input.uint(4)));
        break;
      // --- plain values
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x49: {
        // INT (protocol 0 writes booleans as I01 / I00)
        const text = input.line();
        stack.push(text === '01' ? true : text === '00' ? false : parseInt10(text));
        break;
      }
      case 0x4a: // BININT
        stack.push(Buffer.from(input.bytes(4)).readInt32LE(0));
        break;
      case 0x4b: // BININT1
        stack.push(input.byte());
        break;
      case 0x4d: // BININT2
        stack.push(input.uint(2));
        break;
      case 0x4c: // LONG
        stack.push(parseInt10(input.line()));
        break;
      case 0x8a: // LONG1
        stack.push(decodeLong(input.bytes(input.byte())));
        break;
      case 0x8b: // LONG4
        stack.push(decodeLong(input.bytes(input.uint(4))));
        break;
      case 0x46: // FLOAT
        stack.push(parseFloat(input.line()));
        break;
      case 0x47: // BINFLOAT
        stack.push(Buffer.from(input.bytes(8)).readDoubleBE(0));
        break;
      case 0x53: // STRING
        stack.push(unescape(input.line(), true));
        break;
      case 0x54: // BINSTRING (Python 2 str: read as UTF-8, as torch.load does)
      case 0x58: // BINUNICODE
        stack.push(utf8.decode(sized(4)));
        break;
      case 0x55: // SHORT_BINSTRING
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8.decode(sized(1)));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8.decode(sized(8)));
        break;
      case 0x56: // UNICODE
        stack.push(unescape(input.line(), false));
        break;
      case 0x42: // BINBYTES
        stack.push(Uint8Array.from(sized(4)));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(Uint8Array.from(sized(1)));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(Uint8Array.from(sized(8)));
        break;
      case 0x98: // READONLY_BUFFER: the bytes stay as they are
        break;
      case 0x97: // NEXT_BUFFER
        throw new PickleError('the pickle takes out-of-band buffers (protocol 5 NEXT_BUFFER), which a weights file never uses');
      // --- containers
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x74: {
        // TUPLE (popMark switches stacks: take the items before pushing)
        const items = popMark();
        stack.push(new PyTuple(items));
        break;
      }
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push(new PyTuple([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push(new PyTuple([pop(), b, c]));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: {
        // LIST
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        list('APPEND').push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        list('APPENDS').push(...items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict());
        break;
      case 0x64: {
        // DICT
        const d = new PyDict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        dict('SETITEM').entries.set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(dict('SETITEMS'), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push(new PySet());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof PySet)) throw new PickleError('ADDITEMS may only add to a set; the pickle tries another object');
        s.items.push(...items);
        break;
      }
      case 0x91: {
        // FROZENSET
        const items = popMark();
        stack.push(new PySet(items));
        break;
      }
      // --- what would reach Python code: all through the policy
      case 0x63: {
        // GLOBAL
        const module = input.line();
        stack.push(policy.global(module, input.line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = str(pop(), 'STACK_GLOBAL');
        stack.push(policy.global(str(pop(), 'STACK_GLOBAL'), name));
        break;
      }
      case 0x69: {
        // INST
        const module = input.line();
        const cls = policy.global(module, input.line());
        const args = popMark();
        stack.push(policy.call(cls, args));
        break;
      }
      case 0x6f: {
        // OBJ
        const [cls, ...args] = popMark();
        stack.push(policy.call(cls, args));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = tuple(pop(), 'REDUCE');
        stack.push(policy.call(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = tuple(pop(), 'NEWOBJ');
        stack.push(policy.newObject(pop(), args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = tuple(pop(), 'NEWOBJ_EX');
        const cls = pop();
        if (!(kwargs instanceof PyDict) || kwargs.entries.size) throw new PickleError('NEWOBJ_EX with keyword arguments, which a weights file never uses');
        stack.push(policy.newObject(cls, args));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        policy.build(top(), state);
        break;
      }
      case 0x50: // PERSID
        stack.push(policy.persistentLoad(input.line()));
        break;
      case 0x51: // BINPERSID
        stack.push(policy.persistentLoad(pop()));
        break;
      case 0x82:
      case 0x83:
      case 0x84:
        throw new PickleError('the pickle names a global through the copyreg extension registry (EXT1/EXT2/EXT4), which a weights file never does');
      default:
        throw new PickleError(`unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}; the data is corrupt or not a pickle`);
    }
  }
}
