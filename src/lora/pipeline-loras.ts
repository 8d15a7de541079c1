/**
 * The LoRAs of a pipeline: those given at load time plus, per generation, those of the options
 * and of the prompt's `<lora:…>` tags. The components' graphs are rebuilt (or read from the graph
 * cache) only when the set changes; an unchanged set reuses the sessions in place.
 */
import { resolve } from 'node:path';
import { applyLoras, loraHashes, type LoraHost } from './apply.js';
import { LoraFile } from './file.js';
import { loadLora, type LoadedLora, type LoraSpec } from './merge.js';
import { extractLoraTags, resolvePromptLora } from './prompt-tags.js';
import { UserError } from '../errors.js';

/** A LoRA as one generation used it. */
export interface UsedLora {
  /** The name in `Lora hashes`: as written in a prompt tag, else the file's base name. */
  name: string;
  path: string;
  scale: number;
  unetScale?: number;
  /** AUTOMATIC1111's short hash (12 hex digits). */
  hash: string;
}

export interface LorasForGeneration {
  /** The prompt without its `<…>` tags, for the text encoder. */
  prompt: string;
  /**
   * The prompt for the infotext: as written, with a tag appended for each LoRA that came from the
   * options rather than the prompt (as A1111 does for the LoRA its settings add), so that the
   * PNG records every LoRA with its weight.
   */
  infotextPrompt: string;
  used: UsedLora[];
  /** The infotext's `Lora hashes` value, when any LoRA is used. */
  hashes?: string;
}

export class PipelineLoras {
  /** Opened files by path, with the fingerprint they had when opened. */
  private readonly files = new Map<string, { file: LoraFile; fingerprint: string }>();
  private applied = '';

  constructor(
    private readonly hosts: readonly LoraHost[],
    private readonly base: readonly LoraSpec[],
  ) {}

  /** A file opened once and reopened only when it changed on disk (its hash is cached with it). */
  private open(path: string): LoraFile {
    const p = resolve(path);
    const cached = this.files.get(p);
    if (cached) {
      try {
        if (cached.file.fingerprint() === cached.fingerprint) return cached.file;
      } catch {
        // Gone since: LoraFile.open below says so.
      }
    }
    const file = LoraFile.open(p);
    this.files.set(p, { file, fingerprint: file.fingerprint() });
    return file;
  }

  /** Puts exactly `specs` onto the components (base ones first); nothing happens when they are already there. */
  private use(specs: readonly (LoraSpec & { name?: string })[], onWarning?: (m: string) => void): UsedLora[] {
    const loaded: (LoadedLora & { name: string })[] = specs.map((s) => {
      const l = loadLora(s, (p) => this.open(p));
      return { ...l, name: s.name ?? l.file.name };
    });
    const key = loaded.map((l) => `${l.file.fingerprint()}*${l.scale}/${l.unetScale}`).join('|');
    if (key !== this.applied) {
      // A failed apply leaves the components as they were, so the old key stays true.
      applyLoras(loaded, this.hosts, { strict: true, onWarning });
      this.applied = key;
    }
    return loaded.map((l) => ({
      name: l.name,
      path: l.file.path,
      scale: l.scale,
      ...(l.unetScale !== undefined ? { unetScale: l.unetScale } : {}),
      hash: l.file.shortHash(),
    }));
  }

  /** Checks and applies the load-time LoRAs, so that a bad file fails before any generation. */
  useBase(onWarning?: (m: string) => void): void {
    this.use(this.base, onWarning);
  }

  /** The LoRAs for one generation: load-time ones, `extra` (the options'), and the prompt's tags. */
  forGeneration(prompt: string, extra: readonly LoraSpec[] | undefined, loraDir: string | undefined, onWarning?: (m: string) => void): LorasForGeneration {
    const tags = extractLoraTags(prompt);
    const warn = onWarning ?? ((m: string) => console.warn(m));
    for (const t of tags.ignored) warn(`prompt tag ${t} is not supported here (only <lora:…>); it was removed from the prompt`);
    const fromTags = tags.loras.map((t) => ({ ...resolvePromptLora(t, loraDir), name: t.name }));
    if (extra !== undefined && !Array.isArray(extra)) throw new UserError('loras must be a list of { path, scale }');
    const used = this.use([...this.base, ...(extra ?? []), ...fromTags], onWarning);
    const fromOptions = used.slice(0, used.length - fromTags.length);
    const infotextPrompt = prompt + fromOptions.map((u) => `<lora:${u.name}:${u.scale}${u.unetScale !== undefined ? `:${u.unetScale}` : ''}>`).join('');
    return { prompt: tags.text, infotextPrompt, used, ...(used.length > 0 ? { hashes: loraHashes(used) } : {}) };
  }
}
