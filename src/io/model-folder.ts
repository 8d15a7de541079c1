/** Finds a component (unet/, vae/, text_encoder/, …) in a diffusers model folder. */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { UserError } from '../errors.js';

export interface ComponentFolder {
  folder: string;
  config: Record<string, unknown>;
  weightFiles: string[];
}

/** Weight file stems in order of preference: full precision first, then the fp16 variant. */
const WEIGHT_STEMS = ['diffusion_pytorch_model', 'model'];
/** PyTorch weight files (diffusers' and transformers' names), used when a folder has no safetensors. */
const PICKLE_STEMS = ['diffusion_pytorch_model', 'pytorch_model'];

export function readJson(path: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new UserError(`${what}: ${path} not found`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserError('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new UserError(`${what}: ${path} is not valid JSON (${(e as Error).message})`);
  }
}

/**
 * `dir` may be the model folder (holding `<name>/`) or the component folder itself.
 * `needWeights` is false for components without weights (tokenizer, scheduler).
 */
export function findComponent(dir: string, name: string, opts: { classNames?: readonly string[]; configFile?: string; needWeights?: boolean } = {}): ComponentFolder {
  const configFile = opts.configFile ?? 'config.json';
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new UserError(`model folder ${root} not found; pass a diffusers model folder (holding ${name}/) or the ${name}/ folder itself`);
  }
  const candidates = basename(root) === name ? [root, join(root, name)] : [join(root, name), root];
  const folder = candidates.find((c) => existsSync(join(c, configFile)) && isClass(readJson(join(c, configFile), name), opts.classNames));
  if (!folder) {
    throw new UserError(`no ${name} component in ${root}: expected ${join(root, name, configFile)} (diffusers layout)`);
  }
  const config = readJson(join(folder, configFile), name);
  return { folder, config, weightFiles: opts.needWeights === false ? [] : findWeights(folder, name) };
}

/** True unless the config names a class (diffusers' _class_name, transformers' architectures) other than these. */
function isClass(config: Record<string, unknown>, classNames?: readonly string[]): boolean {
  if (!classNames) return true;
  const named = (config._class_name as string | undefined) ?? (config.architectures as string[] | undefined)?.[0];
  return named === undefined || classNames.includes(named);
}

/** The weights of a component folder: safetensors first, else PyTorch `.bin` files; one file or a sharded index. */
function findWeights(folder: string, name: string): string[] {
  const files = readdirSync(folder);
  for (const [stems, ext] of [
    [WEIGHT_STEMS, 'safetensors'],
    [PICKLE_STEMS, 'bin'],
  ] as const) {
    for (const variant of ['', '.fp16']) {
      for (const stem of stems) {
        const single = `${stem}${variant}.${ext}`;
        if (files.includes(single)) return [join(folder, single)];
        const index = `${stem}.${ext}.index${variant}.json`;
        if (files.includes(index)) {
          const map = readJson(join(folder, index), name).weight_map as Record<string, string> | undefined;
          if (!map) throw new UserError(`${name}: ${join(folder, index)} has no weight_map`);
          return [...new Set(Object.values(map))].map((f) => join(folder, f));
        }
      }
    }
  }
  throw new UserError(`${name}: no weights in ${folder} (expected ${WEIGHT_STEMS.map((s) => `${s}.safetensors`).join(' or ')}, or ${PICKLE_STEMS.map((s) => `${s}.bin`).join(' or ')})`);
}
