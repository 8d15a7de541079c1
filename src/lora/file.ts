/**
 * A LoRA / LoCon file (safetensors) as kohya-ss, AUTOMATIC1111 and diffusers/PEFT write it: per
 * module a `down` [r, in(, kh, kw)] and an `up` [out, r(, 1, 1)] matrix and an optional `alpha`.
 * Opening reads the header only and checks that every module is complete and consistent.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { SafetensorsFile } from '../io/safetensors.js';
import type { TensorFile, TensorInfo } from '../io/tensor-file.js';
import { openWeightsFile } from '../io/weights-file.js';
import { UserError } from '../errors.js';

/** Which part of a Stable Diffusion model a LoRA module belongs to. */
export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';

export interface LoraModule {
  /** The module's name in the file, without the `.lora_down.weight`-style suffix. */
  name: string;
  /** undefined: a prefix that names no part of a Stable Diffusion model. */
  component?: LoraComponent;
  /** The name inside the component: kohya's underscored form or diffusers' dotted one. */
  local: string;
  down: TensorInfo;
  up: TensorInfo;
  alpha?: TensorInfo;
}

/** Module-name prefixes: kohya-ss (`lora_unet_…`, SDXL's `lora_te1_`/`lora_te2_`) and diffusers/PEFT (`unet.…`). */
const PREFIXES: [string, LoraComponent][] = [
  ['lora_unet_', 'unet'],
  ['lora_te_', 'text_encoder'],
  ['lora_te1_', 'text_encoder'],
  ['lora_te2_', 'text_encoder_2'],
  ['unet.', 'unet'],
  ['text_encoder.', 'text_encoder'],
  ['text_encoder_2.', 'text_encoder_2'],
];

/** Tensor-name suffixes: kohya's, diffusers' older `lora.down`, PEFT's `lora_A` / `lora_B`. */
const ROLES: [string, 'down' | 'up' | 'alpha'][] = [
  ['.lora_down.weight', 'down'],
  ['.lora_up.weight', 'up'],
  ['.lora.down.weight', 'down'],
  ['.lora.up.weight', 'up'],
  ['.lora_A.weight', 'down'],
  ['.lora_B.weight', 'up'],
  ['.alpha', 'alpha'],
];

/** Parts of other LyCORIS network types that a plain up·down merge would get wrong. */
const UNSUPPORTED = [
  ['.lora_mid.weight', 'LoCon with a Tucker-decomposed middle (lora_mid)'],
  ['.dora_scale', 'DoRA (dora_scale)'],
  ['.hada_w1_a', 'LoHa (hada_*)'],
  ['.lokr_w1', 'LoKr (lokr_*)'],
] as const;

function fail(path: string, msg: string): never {
  throw new UserError(`LoRA ${basename(path)}: ${msg} (file: ${path})`);
}

export class LoraFile {
  private sha256?: string;

  private constructor(
    readonly path: string,
    readonly modules: readonly LoraModule[],
    /** Tensors that are no part of a LoRA module (reported as unmatched, never silently used). */
    readonly strayTensors: readonly string[],
    readonly metadata: Record<string, string>,
    private readonly file: TensorFile,
  ) {}

  /** The name A1111 gives the file: its base name without the extension. */
  get name(): string {
    return basename(this.path, extname(this.path));
  }

  static open(path: string): LoraFile {
    const file = openWeightsFile(path);
    const parts = new Map<string, Partial<Record<'down' | 'up' | 'alpha', TensorInfo>>>();
    const stray: string[] = [];
    for (const [key, info] of file.tensors) {
      const bad = UNSUPPORTED.find(([suffix]) => key.includes(suffix));
      if (bad) fail(path, `tensor "${key}" belongs to ${bad[1]}, which todo-sd does not merge; use a plain LoRA / LoCon file`);
      const role = ROLES.find(([suffix]) => key.endsWith(suffix));
      if (!role) {
        stray.push(key);
        continue;
      }
      const name = key.slice(0, key.length - role[0].length);
      const entry = parts.get(name) ?? {};
      entry[role[1]] = info;
      parts.set(name, entry);
    }
    const modules: LoraModule[] = [];
    for (const [name, p] of parts) {
      if (!p.down || !p.up) {
        // An alpha on its own is another network type's leftover, not a LoRA module.
        if (!p.down && !p.up) {
          stray.push(`${name}.alpha`);
          continue;
        }
        fail(path, `module "${name}" has ${p.down ? 'a down' : 'an up'} matrix but no ${p.down ? 'up' : 'down'} matrix; the file is incomplete`);
      }
      checkModule(path, name, p.down, p.up, p.alpha);
      const prefix = PREFIXES.find(([pre]) => name.startsWith(pre));
      modules.push({ name, component: prefix?.[1], local: prefix ? name.slice(prefix[0].length) : name, down: p.down, up: p.up, alpha: p.alpha });
    }
    if (modules.length === 0) {
      const seen = [...file.tensors.keys()].slice(0, 3).join(', ') || 'no tensors';
      fail(path, `this is not a LoRA: no lora_down/lora_up (or lora_A/lora_B) tensors (found ${seen}${file.tensors.size > 3 ? ', …' : ''}); pass a kohya-ss / A1111 LoRA or LoCon .safetensors file`);
    }
    return new LoraFile(path, modules, stray, file.metadata, file);
  }

  /** One tensor as fp32 values. */
  read(t: TensorInfo): Float32Array {
    return this.file.readFloat32(t.name);
  }

  /** Path, size and modification time: what identifies this file's contents in a graph cache key. */
  fingerprint(): string {
    const s = statSync(this.path);
    return `${this.path}:${s.size}:${s.mtimeMs}`;
  }

  /**
   * AUTOMATIC1111's hash of a LoRA: the `sshs_model_hash` metadata if the file has it, else
   * kohya-ss's "addnet" hash, the sha256 of everything after the header (the tensor data); a
   * PyTorch file's is the sha256 of the whole file (A1111's `use_addnet_hash` is for safetensors only).
   */
  hash(): string {
    if (this.sha256) return this.sha256;
    const fromMeta = this.metadata.sshs_model_hash;
    if (fromMeta) return (this.sha256 = fromMeta);
    const h = createHash('sha256');
    const fd = openSync(this.path, 'r');
    try {
      let pos = 0;
      if (this.file instanceof SafetensorsFile) {
        const len = Buffer.alloc(8);
        readSync(fd, len, 0, 8, 0);
        pos = 8 + Number(len.readBigUInt64LE(0));
      }
      const buf = Buffer.alloc(1 << 20);
      for (let n; (n = readSync(fd, buf, 0, buf.length, pos)) > 0; pos += n) h.update(buf.subarray(0, n));
    } finally {
      closeSync(fd);
    }
    return (this.sha256 = h.digest('hex'));
  }

  /** The first 12 hex digits of `hash()`, as A1111 writes in `Lora hashes`. */
  shortHash(): string {
    return this.hash().slice(0, 12);
  }
}

function checkModule(path: string, name: string, down: TensorInfo, up: TensorInfo, alpha?: TensorInfo): void {
  const shape = (t: TensorInfo): string => `[${t.shape.join(', ')}]`;
  const rankOk = (t: TensorInfo): boolean => t.shape.length === 2 || t.shape.length === 4;
  if (!rankOk(down) || !rankOk(up) || down.shape.length !== up.shape.length) {
    fail(path, `module "${name}": down ${shape(down)} and up ${shape(up)} must both be matrices (linear) or both 4-D (convolution)`);
  }
  if (up.shape[1] !== down.shape[0] || (up.shape.length === 4 && (up.shape[2] !== 1 || up.shape[3] !== 1))) {
    fail(path, `module "${name}": up ${shape(up)} does not follow down ${shape(down)} (expected up [out, ${down.shape[0]}${up.shape.length === 4 ? ', 1, 1' : ''}])`);
  }
  for (const t of [down, up]) {
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') fail(path, `tensor "${t.name}" is ${t.dtype}; LoRA weights must be F32, F16 or BF16`);
  }
  if (alpha && alpha.shape.reduce((a, b) => a * b, 1) !== 1) fail(path, `"${alpha.name}" must hold one number; it has shape ${shape(alpha)}`);
}
