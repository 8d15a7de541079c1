/**
 * The models a server offers: the built-in one and what `--models-dir` holds (diffusers folders
 * and single `.safetensors` checkpoints at its top level; LoRAs in its `Lora/` folder, as
 * A1111 lays them out). Requests name models; names only ever resolve to entries listed here,
 * so no request can reach a path outside the folder.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
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
      if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`--models-dir ${dir} is not a folder; create it or name another`);
      this.modelsDir = dir;
    }
  }

  list(): ModelEntry[] {
    const out: ModelEntry[] = [{ name: BUILTIN_MODEL_NAME, title: BUILTIN_MODEL_NAME, path: BUILTIN_MODEL_DIR }];
    if (!this.modelsDir) return out;
    for (const e of readdirSync(this.modelsDir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(this.modelsDir, e.name);
      if (e.isDirectory() && isModelFolder(path) && e.name !== BUILTIN_MODEL_NAME) out.push({ name: e.name, title: e.name, path });
      if (e.isFile() && e.name.endsWith('.safetensors')) out.push({ name: e.name.slice(0, -'.safetensors'.length), title: e.name, path });
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

  /** The LoRA folder (`<models-dir>/Lora`), when there is one. */
  get loraDir(): string | undefined {
    const dir = this.modelsDir && join(this.modelsDir, 'Lora');
    return dir && existsSync(dir) ? dir : undefined;
  }

  loras(): LoraEntry[] {
    const dir = this.loraDir;
    if (!dir) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.safetensors'))
      .sort()
      .map((f) => ({ name: f.slice(0, -'.safetensors'.length), path: join(dir, f) }));
  }
}
