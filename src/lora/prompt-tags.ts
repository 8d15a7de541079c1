/**
 * AUTOMATIC1111's extra-network tags in a prompt: `<lora:name>`, `<lora:name:0.8>`,
 * `<lora:name:te:unet>` and the named forms `te=…`, `unet=…`. As in A1111, every `<kind:…>` tag is
 * taken out of the text before it is encoded (the infotext keeps the prompt as written).
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LoraSpec } from './merge.js';
import { UserError } from '../errors.js';

/** A1111's `re_extra_net`. */
const TAG = /<(\w+):([^>]+)>/g;

export interface PromptLora {
  /** The name as written in the tag (A1111's "mentioned name", used in `Lora hashes`). */
  name: string;
  scale: number;
  unetScale?: number;
}

export interface PromptTags {
  /** The prompt without its tags: what the text encoder sees. */
  text: string;
  loras: PromptLora[];
  /** Tags of other kinds (hypernet, …): removed, not applied. */
  ignored: string[];
}

function number(v: string, tag: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UserError(`prompt tag ${tag}: "${v}" is not a number (write e.g. <lora:name:0.8>)`);
  return n;
}

export function extractLoraTags(prompt: string): PromptTags {
  const loras: PromptLora[] = [];
  const ignored: string[] = [];
  const text = prompt.replace(TAG, (tag: string, kind: string, args: string) => {
    if (kind !== 'lora') {
      ignored.push(tag);
      return '';
    }
    const positional: string[] = [];
    const named: Record<string, string> = {};
    for (const item of args.split(':')) {
      const eq = item.indexOf('=');
      if (eq >= 0) named[item.slice(0, eq)] = item.slice(eq + 1);
      else positional.push(item);
    }
    const name = positional[0];
    if (!name) throw new UserError(`prompt tag ${tag} names no LoRA (write <lora:name:0.8>)`);
    let scale = positional[1] !== undefined ? number(positional[1], tag) : 1;
    if (named.te !== undefined) scale = number(named.te, tag);
    let unetScale = positional[2] !== undefined ? number(positional[2], tag) : undefined;
    if (named.unet !== undefined) unetScale = number(named.unet, tag);
    loras.push({ name, scale, ...(unetScale !== undefined && unetScale !== scale ? { unetScale } : {}) });
    return '';
  });
  return { text, loras, ignored };
}

/** The file extensions of LoRAs in a LoRA folder, in order of preference (A1111's). */
export const LORA_EXTENSIONS = ['.safetensors', '.pt', '.ckpt'];

/** `<lora:name>` → `<dir>/name.safetensors` (or `.pt`, `.ckpt`); the name may not leave the folder. */
export function resolvePromptLora(tag: PromptLora, loraDir: string | undefined): LoraSpec {
  if (!loraDir) throw new UserError(`the prompt asks for <lora:${tag.name}> but no LoRA folder is set: pass --lora-dir DIR (loraDir in the API)`);
  if (/[/\\]/.test(tag.name) || tag.name === '.' || tag.name === '..') {
    throw new UserError(`<lora:${tag.name}>: a LoRA name may not contain path separators; put ${tag.name}.safetensors directly in ${loraDir}`);
  }
  const dir = resolve(loraDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`LoRA folder ${dir} not found (--lora-dir)`);
  const path = LORA_EXTENSIONS.map((e) => join(dir, `${tag.name}${e}`)).find((p) => existsSync(p));
  if (!path) throw new UserError(`<lora:${tag.name}>: ${join(dir, `${tag.name}.safetensors`)} not found; the LoRA folder holds <name>.safetensors (or .pt, .ckpt) files`);
  return { path, scale: tag.scale, ...(tag.unetScale !== undefined ? { unetScale: tag.unetScale } : {}) };
}
