/**
 * Where a TAESD's config and weights come from: a diffusers AutoencoderTiny folder (madebyollin/taesd
 * and madebyollin/taesdxl on Hugging Face; or a model folder whose `vae/` is one), its weights file
 * beside config.json, or madebyollin's single files (`taesd_decoder.safetensors` with
 * `taesd_encoder.safetensors` beside it; ComfyUI's combined layout too), their keys mapped onto
 * diffusers' names in place. A folder holding one TAESD per family (A1111's `models/VAE-approx`:
 * `taesd_decoder.*`, `taesdxl_decoder.*`) is resolved per family.
 *
 * SD and SDXL TAESDs have the same architecture and config; only the name tells them apart,
 * as in madebyollin's and A1111's code: `taesdxl` → SDXL, `taesd` → SD 1.x / 2.x.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { WeightStore, type WeightFiles } from '../graph/weights.js';
import { findComponent, readJson } from '../io/model-folder.js';
import { SafetensorsFile, type TensorInfo } from '../io/safetensors.js';
import { COMBINED_PREFIX, diffusersTinyVAEKey, tinyVAEConfigFromTensors, tinyVAEPartOf, type TinyPart } from './single-file/taesd-layout.js';
import { CheckpointWeights, type CheckpointSlot } from './single-file/weights.js';

export type TinyVAEFamily = 'sd' | 'sdxl';

export const TINY_VAE_FAMILIES: readonly TinyVAEFamily[] = ['sd', 'sdxl'];

/** File-name stem of each family's TAESD, as madebyollin publishes them and A1111 looks for them. */
export const TINY_VAE_NAMES: Record<TinyVAEFamily, string> = { sd: 'taesd', sdxl: 'taesdxl' };

const PICKLE = /\.(pth|pt|ckpt|bin|pkl)$/i;

export interface TinyVAESource {
  config: Record<string, unknown>;
  decoder?: WeightFiles;
  encoder?: WeightFiles;
  /** The family its name says, if it says one. */
  family?: TinyVAEFamily;
  /** The path, for messages. */
  name: string;
}

/**
 * The family a path's name says: a folder's own name; a file's name, else its folder's (a diffusers
 * weights file); else a Hugging Face cache folder (`models--madebyollin--taesdxl`) above either.
 * The first naming a TAESD decides.
 */
export function tinyVAEFamilyOfName(path: string): TinyVAEFamily | undefined {
  const parts = resolve(path).split(sep).reverse();
  const own = /\.(safetensors|pth|pt|ckpt|bin)$/i.test(parts[0]!) ? 2 : 1;
  for (const part of [...parts.slice(0, own), ...parts.slice(own).filter((p) => p.startsWith('models--'))]) {
    if (/taesdxl/i.test(part)) return 'sdxl';
    // TAESD3, TAEF1 and the like are other latent spaces (16 channels): no SD family.
    if (/tae(sd3|f\d|sana|qi)/i.test(part)) return undefined;
    if (/taesd/i.test(part)) return 'sd';
  }
  return undefined;
}

const isAutoencoderTiny = (config: string): boolean => existsSync(config) && readJson(config, 'vae')._class_name === 'AutoencoderTiny';

function refuseTinyPickle(path: string): never {
  throw new Error(
    `${basename(path)} is a PyTorch pickle: todo-sd reads TAESD as safetensors only (loading a pickle can run any code it holds). ` +
      'Use the .safetensors files: taesd_decoder.safetensors / taesd_encoder.safetensors (taesdxl_… for SDXL) from huggingface.co/madebyollin/taesd ' +
      '(…/taesdxl), or the diffusers folder there (config.json + diffusion_pytorch_model.safetensors)',
  );
}

interface Half {
  file: SafetensorsFile;
  /** Keyed without `prefix`, by madebyollin's indices. */
  tensors: ReadonlyMap<string, TensorInfo>;
  prefix: string;
}

/** The TAESD halves a safetensors file holds in madebyollin's (or ComfyUI's combined) layout. */
function originalHalves(file: SafetensorsFile): Partial<Record<TinyPart, Half>> {
  const out: Partial<Record<TinyPart, Half>> = {};
  for (const part of ['encoder', 'decoder'] as const) {
    const prefix = COMBINED_PREFIX[part];
    const tensors = new Map([...file.tensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
    if (tensors.size > 0) out[part] = { file, tensors, prefix };
  }
  if (out.encoder || out.decoder) return out;
  const part = tinyVAEPartOf(file.tensors);
  return part ? { [part]: { file, tensors: file.tensors, prefix: '' } } : {};
}

/** Whether `path` is a TAESD: an AutoencoderTiny folder or weights file, madebyollin's files, or a folder of them per family. */
export function isTinyVAESource(path: string): boolean {
  const p = resolve(path);
  if (!existsSync(p)) return PICKLE.test(p) && /tae/i.test(basename(p));
  if (statSync(p).isDirectory()) return isAutoencoderTinyFolder(p) || familyFolderEntries(p).length > 0;
  if (PICKLE.test(p)) return /tae/i.test(basename(p));
  if (isAutoencoderTiny(join(dirname(p), 'config.json'))) return true;
  if (!p.toLowerCase().endsWith('.safetensors')) return false;
  const halves = originalHalves(SafetensorsFile.open(p));
  return halves.encoder !== undefined || halves.decoder !== undefined;
}

/** What in `dir` is a TAESD of some family (A1111's VAE-approx names, or diffusers folders named taesd / taesdxl). */
function familyFolderEntries(dir: string): string[] {
  const stems = Object.values(TINY_VAE_NAMES);
  return readdirSync(dir).filter((f) => stems.some((s) => f === s || f.startsWith(`${s}_decoder.`) || f.startsWith(`${s}_encoder.`)));
}

/** A diffusers AutoencoderTiny folder, or a model folder whose `vae/` is one. */
export function isAutoencoderTinyFolder(path: string): boolean {
  const p = resolve(path);
  return existsSync(p) && statSync(p).isDirectory() && (isAutoencoderTiny(join(p, 'config.json')) || isAutoencoderTiny(join(p, 'vae', 'config.json')));
}

/** Whether `path` is a folder holding one TAESD per family rather than being one TAESD itself. */
export function isTinyVAEFamilyFolder(path: string): boolean {
  const p = resolve(path);
  return existsSync(p) && statSync(p).isDirectory() && !isAutoencoderTinyFolder(p);
}

/**
 * The TAESD for `family` in a folder of them: `taesd_decoder.safetensors` (`taesdxl_…`), else a
 * diffusers folder `taesd/` (`taesdxl/`). Throws naming what it looked for.
 */
export function tinyVAEInFolder(dir: string, family: TinyVAEFamily): string {
  const stem = TINY_VAE_NAMES[family];
  for (const candidate of [`${stem}_decoder.safetensors`, `${stem}_encoder.safetensors`, stem]) {
    const p = join(resolve(dir), candidate);
    if (existsSync(p) && (candidate !== stem || isAutoencoderTiny(join(p, 'config.json')))) return p;
  }
  const pickle = readdirSync(resolve(dir)).find((f) => f.startsWith(`${stem}_decoder.`) && PICKLE.test(f));
  if (pickle) refuseTinyPickle(join(dir, pickle));
  const what = family === 'sdxl' ? 'SDXL' : 'SD 1.x / 2.x';
  throw new Error(`no TAESD for ${what} in ${resolve(dir)}: expected ${stem}_decoder.safetensors (and ${stem}_encoder.safetensors), or a diffusers folder ${stem}/ (huggingface.co/madebyollin/${stem})`);
}

/** The other half's file beside a madebyollin file: `…decoder…` ↔ `…encoder…` in the name. */
function sibling(path: string, part: TinyPart): string | undefined {
  const name = basename(path);
  const [from, to] = part === 'decoder' ? ['decoder', 'encoder'] : ['encoder', 'decoder'];
  const at = name.toLowerCase().lastIndexOf(from);
  if (at < 0) return undefined;
  const other = join(dirname(path), name.slice(0, at) + to + name.slice(at + from.length));
  return existsSync(other) ? other : undefined;
}

/** One half's weights: its tensors under diffusers' names, every tensor accounted for. */
function halfWeights(part: TinyPart, h: Half): CheckpointWeights {
  const slots = new Map<string, CheckpointSlot>();
  for (const k of h.tensors.keys()) {
    const name = diffusersTinyVAEKey(part, k);
    if (!name) throw new Error(`${basename(h.file.path)}: tensor "${h.prefix}${k}" is not part of a TAESD ${part} (madebyollin's layout numbers every module)`);
    slots.set(name, { key: h.prefix + k });
  }
  return new CheckpointWeights(h.file, `taesd_${part}`, slots);
}

function openOriginal(path: string): TinyVAESource {
  const halves = originalHalves(SafetensorsFile.open(path));
  const have = (['encoder', 'decoder'] as const).filter((part) => halves[part]);
  if (have.length === 0) {
    throw new Error(`${basename(path)} is no TAESD file: expected madebyollin's layout (0.weight, 1.conv.0.weight, … as in taesd_encoder.safetensors / taesd_decoder.safetensors) or a diffusers AutoencoderTiny folder`);
  }
  if (have.length === 1) {
    const other: TinyPart = have[0] === 'decoder' ? 'encoder' : 'decoder';
    const beside = sibling(path, have[0]!);
    if (beside) {
      const half = originalHalves(SafetensorsFile.open(beside))[other];
      if (!half) throw new Error(`${basename(beside)} beside ${basename(path)} is not a TAESD ${other}`);
      halves[other] = half;
    }
  }
  const config = tinyVAEConfigFromTensors({ encoder: halves.encoder?.tensors, decoder: halves.decoder?.tensors });
  const weights = (part: TinyPart): CheckpointWeights | undefined => {
    const h = halves[part];
    return h && halfWeights(part, h);
  };
  return { config, decoder: weights('decoder'), encoder: weights('encoder'), family: tinyVAEFamilyOfName(path), name: path };
}

/** One TAESD (not a folder of them per family). */
export function openTinyVAE(source: string): TinyVAESource {
  const path = resolve(source);
  if (!existsSync(path)) {
    if (PICKLE.test(path)) refuseTinyPickle(path);
    throw new Error(`TAESD ${path} not found; pass a diffusers AutoencoderTiny folder or taesd_decoder.safetensors`);
  }
  if (statSync(path).isDirectory()) {
    if (!isAutoencoderTinyFolder(path) && familyFolderEntries(path).length > 0) {
      throw new Error(`${path} holds TAESDs for several families (${familyFolderEntries(path).join(', ')}): pass the file for the model's family, or give the folder as a pipeline's taesd (--taesd), which picks by the model's family`);
    }
    const comp = findComponent(path, 'vae', { classNames: ['AutoencoderTiny'] });
    if (comp.config._class_name !== 'AutoencoderTiny') throw new Error(`${join(comp.folder, 'config.json')} is not an AutoencoderTiny (TAESD) config`);
    const weights = WeightStore.open(comp.weightFiles, 'taesd');
    // A model folder's own vae/ is the model's; another folder's name may say its family.
    const family = comp.folder === join(path, 'vae') ? undefined : tinyVAEFamilyOfName(comp.folder);
    return { config: comp.config, decoder: weights, encoder: weights, family, name: path };
  }
  if (PICKLE.test(path)) refuseTinyPickle(path);
  if (isAutoencoderTiny(join(dirname(path), 'config.json'))) {
    const weights = WeightStore.open([path], 'taesd');
    return { config: readJson(join(dirname(path), 'config.json'), 'vae'), decoder: weights, encoder: weights, family: tinyVAEFamilyOfName(path), name: path };
  }
  return openOriginal(path);
}
