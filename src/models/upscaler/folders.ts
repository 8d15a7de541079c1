/**
 * Upscaler models by name, as AUTOMATIC1111 finds them: every `.pth` / `.pt` / `.safetensors`
 * file in its `ESRGAN/` and `RealESRGAN/` model folders, named by its file name without the
 * extension, and A1111's own names for the models it downloads (`R-ESRGAN 4x+` is
 * `RealESRGAN/RealESRGAN_x4plus.pth`, `ESRGAN_4x` is `ESRGAN/ESRGAN_4x.pth`). Nothing is
 * downloaded: a named model whose file is absent is reported with where to put it and its URL.
 * Names only ever resolve to files listed here.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { UserError } from '../../errors.js';

/** A1111's named models: the folder and file name it downloads each to, from where, and their scale. */
export const A1111_UPSCALER_MODELS = [
  { name: 'ESRGAN_4x', folder: 'ESRGAN', file: 'ESRGAN_4x.pth', url: 'https://github.com/cszn/KAIR/releases/download/v1.0/ESRGAN.pth', scale: 4 },
  { name: 'R-ESRGAN General 4xV3', folder: 'RealESRGAN', file: 'realesr-general-x4v3.pth', url: 'https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-general-x4v3.pth', scale: 4 },
  { name: 'R-ESRGAN General WDN 4xV3', folder: 'RealESRGAN', file: 'realesr-general-wdn-x4v3.pth', url: 'https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-general-wdn-x4v3.pth', scale: 4 },
  { name: 'R-ESRGAN AnimeVideo', folder: 'RealESRGAN', file: 'realesr-animevideov3.pth', url: 'https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-animevideov3.pth', scale: 4 },
  { name: 'R-ESRGAN 4x+', folder: 'RealESRGAN', file: 'RealESRGAN_x4plus.pth', url: 'https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth', scale: 4 },
  { name: 'R-ESRGAN 4x+ Anime6B', folder: 'RealESRGAN', file: 'RealESRGAN_x4plus_anime_6B.pth', url: 'https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth', scale: 4 },
  { name: 'R-ESRGAN 2x+', folder: 'RealESRGAN', file: 'RealESRGAN_x2plus.pth', url: 'https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth', scale: 2 },
] as const;

export const UPSCALER_EXTENSIONS = ['.pth', '.pt', '.safetensors'];

export interface UpscalerEntry {
  /** A1111's name: its own for the models it knows, else the file name without the extension. */
  name: string;
  path: string;
  /** The A1111 folder it was found in (ESRGAN, RealESRGAN), or the folder itself. */
  folder: string;
  /** The scale A1111 states for its named models. */
  scale?: number;
}

export class UpscalerFolders {
  /** Each folder holds model files, or is an A1111 models folder with `ESRGAN/` and `RealESRGAN/` inside. */
  constructor(readonly dirs: readonly string[]) {}

  /** The folders that exist, with the A1111 folder name each stands for. */
  private folders(): { dir: string; kind: string }[] {
    const out: { dir: string; kind: string }[] = [];
    for (const d of this.dirs.map((x) => resolve(x))) {
      for (const [dir, kind] of [
        [d, basename(d)],
        [join(d, 'ESRGAN'), 'ESRGAN'],
        [join(d, 'RealESRGAN'), 'RealESRGAN'],
      ] as const) {
        if (existsSync(dir) && statSync(dir).isDirectory() && !out.some((o) => o.dir === dir)) out.push({ dir, kind });
      }
    }
    return out;
  }

  /** Every upscaler model file, by name (A1111's sort: case-insensitive). */
  list(): UpscalerEntry[] {
    const byName = new Map<string, UpscalerEntry>();
    for (const { dir, kind } of this.folders()) {
      for (const f of readdirSync(dir).sort()) {
        if (!UPSCALER_EXTENSIONS.includes(extname(f).toLowerCase()) || !statSync(join(dir, f)).isFile()) continue;
        const known = A1111_UPSCALER_MODELS.find((m) => m.file === f);
        const name = known?.name ?? basename(f, extname(f));
        if (!byName.has(name)) byName.set(name, { name, path: join(dir, f), folder: kind, ...(known ? { scale: known.scale } : {}) });
      }
    }
    return [...byName.values()].sort((a, b) => a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
  }

  /** A model by its name (or its file name); the error says what is there, and where a known model's file goes. */
  resolve(name: string): UpscalerEntry {
    const all = this.list();
    const hit = all.find((e) => e.name === name) ?? all.find((e) => basename(e.path) === name || e.name.toLowerCase() === name.toLowerCase());
    if (hit) return hit;
    const known = A1111_UPSCALER_MODELS.find((m) => m.name.toLowerCase() === name.toLowerCase());
    const where = this.dirs.length ? this.dirs.map((d) => resolve(d)).join(', ') : 'no upscaler folder (give --upscaler-dir, or --models-dir to the server)';
    const fix = known ? ` Put ${known.file} (from ${known.url}) in ${known.folder}/ of the models folder, or in the upscaler folder.` : '';
    throw new UserError(`upscaler "${name}" not found in ${where}; available: ${all.map((e) => e.name).join(', ') || 'none'}.${fix}`);
  }
}
