/**
 * The models a server offers: the built-in one and what `--models-dir` holds (diffusers folders
 * and single `.safetensors` / `.ckpt` checkpoints at its top level; LoRAs in its `Lora/` folder, as
 * A1111 lays them out). Requests name models; names only ever resolve to entries listed here,
 * so no request can reach a path outside the folder.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LORA_EXTENSIONS } from '../lora/prompt-tags.js';
import { UpscalerFolders } from '../models/upscaler/folders.js';
import { BUILTIN_MODEL_DIR, BUILTIN_MODEL_NAME } from '../models/builtin.js';
import { UserError } from '../errors.js';

export interface ModelEntry {
  name: string;
  /** A1111's "title" (what sd_model_checkpoint holds): the file name for a checkpoint file. */
  title: string;
  path: string;
}

export interface LoraEntry {
  name: string;
  path: string;
}

const isModelFolder = (dir: string): boolean => existsSync(join(dir, 'model_index.json')) || existsSync(join(dir, 'unet', 'config.json'));

export class ModelRegistry {
  readonly modelsDir?: string;

  constructor(modelsDir?: string) {
    if (modelsDir !== undefined) {
      const dir = resolve(modelsDir);
      if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`--models-dir ${dir} is not a folder; create it or name another`);
      this.modelsDir = dir;
    }
  }

  list(): ModelEntry[] {
    const out: ModelEntry[] = [{ name: BUILTIN_MODEL_NAME, title: BUILTIN_MODEL_NAME, path: BUILTIN_MODEL_DIR }];
    if (!this.modelsDir) return out;
    for (const e of readdirSync(this.modelsDir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(this.modelsDir, e.name);
      if (e.isDirectory() && isModelFolder(path) && e.name !== BUILTIN_MODEL_NAME) out.push({ name: e.name, title: e.name, path });
      const checkpoint = e.isFile() && /\.(safetensors|ckpt)$/.exec(e.name);
      if (checkpoint) out.push({ name: e.name.slice(0, -checkpoint[0].length), title: e.name, path });
    }
    return out;
  }

  /** A model by name or title (A1111 clients send either, sometimes with a " [hash]" suffix). */
  resolve(name: string): ModelEntry {
    const bare = name.replace(/\s*\[[0-9a-f]+\]$/i, '');
    const hit = this.list().find((m) => m.name === bare || m.title === bare);
    if (!hit) throw new UserError(`unknown model "${name}"; available: ${this.list().map((m) => m.title).join(', ')} (models are looked up by name inside --models-dir)`);
    return hit;
  }

  /** Upscaler models in `<models-dir>/ESRGAN` and `<models-dir>/RealESRGAN`, as A1111 keeps them. */
  upscalers(): UpscalerFolders {
    return new UpscalerFolders(this.modelsDir ? [join(this.modelsDir, 'ESRGAN'), join(this.modelsDir, 'RealESRGAN')] : []);
  }

  /** The LoRA folder (`<models-dir>/Lora`), when there is one. */
  get loraDir(): string | undefined {
    const dir = this.modelsDir && join(this.modelsDir, 'Lora');
    return dir && existsSync(dir) ? dir : undefined;
  }

  loras(): LoraEntry[] {
    const dir = this.loraDir;
    if (!dir) return [];
    const byName = new Map<string, string>();
    // One entry per name; the extension order is the one <lora:name> tags resolve with.
    for (const ext of [...LORA_EXTENSIONS].reverse()) {
      for (const f of readdirSync(dir)) if (f.endsWith(ext)) byName.set(f.slice(0, -ext.length), join(dir, f));
    }
    return [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, path]) => ({ name, path }));
  }
}
