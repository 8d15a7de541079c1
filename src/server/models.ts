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
import { a1111ModelHash } from '../pipeline/controlnet-infotext.js';
import { CONTROLNET_EXTENSIONS, controlNetName } from '../models/controlnet.js';

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

export interface ControlNetEntry {
  name: string;
  /** `name [hash]`, as the ControlNet extension lists models (A1111's short model hash). */
  title: string;
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

  /** The ControlNet folder (`<models-dir>/ControlNet`), when there is one. */
  get controlNetDir(): string | undefined {
    const dir = this.modelsDir && join(this.modelsDir, 'ControlNet');
    return dir && existsSync(dir) ? dir : undefined;
  }

  /** ControlNets: single files (`.safetensors`, `.pth`, …; in subfolders too, as the extension finds them) and diffusers ControlNet folders, by name. */
  controlNets(): ControlNetEntry[] {
    const out: ControlNetEntry[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        const path = join(dir, e.name);
        const folder = e.isDirectory() && existsSync(join(path, 'config.json'));
        if (e.isFile() && CONTROLNET_EXTENSIONS.some((x) => e.name.toLowerCase().endsWith(x))) out.push({ name: controlNetName(e.name), title: '', path });
        else if (folder) out.push({ name: e.name, title: '', path });
        else if (e.isDirectory()) walk(path);
      }
    };
    if (this.controlNetDir) walk(this.controlNetDir);
    return out.map((c) => ({ ...c, title: `${c.name} [${a1111ModelHash(c.path)}]` }));
  }

  /**
   * A ControlNet as the extension finds one: by its title (`name [hash]`), its name (any case),
   * else the shortest name that contains it (`canny` → control_v11p_sd15_canny).
   */
  resolveControlNet(name: string): ControlNetEntry {
    const all = this.controlNets();
    const bare = name.replace(/\s*\[[0-9a-f]+\]$/i, '').toLowerCase();
    const hit =
      all.find((c) => c.title === name) ??
      all.find((c) => c.name.toLowerCase() === bare) ??
      all.filter((c) => bare !== '' && c.name.toLowerCase().includes(bare)).sort((a, b) => a.name.length - b.name.length)[0];
    if (!hit) {
      const where = this.controlNetDir ?? (this.modelsDir ? join(this.modelsDir, 'ControlNet') : 'a ControlNet/ folder in --models-dir');
      throw new UserError(`unknown ControlNet model "${name}"; available: ${all.map((c) => c.title).join(', ') || `none (put ControlNets in ${where})`}`);
    }
    return hit;
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
