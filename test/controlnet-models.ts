/** Tiny random models and ControlNets in the real layouts, written once per test process. */
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { writeRandomControlNet, writeRandomControlNetFile } from '../src/models/random-controlnet.js';
import { writeRandomModel } from '../src/models/random-model.js';

export interface ControlNetModels {
  dir: string;
  tiny: string;
  sdxl: string;
  /** ControlNets for `tiny`: a diffusers folder, and the same weights as A1111's single file (control_model.*, with its .yaml). */
  cn: string;
  cnFile: string;
  /** ControlNets for `sdxl`: a diffusers folder and the same weights as one file with diffusers names. */
  cnXl: string;
  cnXlFile: string;
}

let made: ControlNetModels | undefined;

export function controlNetModels(): ControlNetModels {
  if (made) return made;
  const dir = mkdtempSync(join(tmpdir(), 'todo-sd-controlnet-'));
  const m: ControlNetModels = {
    dir,
    tiny: join(dir, 'tiny'),
    sdxl: join(dir, 'sdxl-tiny'),
    cn: join(dir, 'controlnet-tiny'),
    cnFile: join(dir, 'files', 'control_tiny_canny.safetensors'),
    cnXl: join(dir, 'controlnet-sdxl-tiny'),
    cnXlFile: join(dir, 'files', 'diffusers_xl_tiny.safetensors'),
  };
  writeRandomModel(m.tiny, 'tiny');
  writeRandomModel(m.sdxl, 'sdxl-tiny');
  writeRandomControlNet(m.cn, 'controlnet-tiny', { seed: 5 });
  writeRandomControlNetFile(m.cnFile, 'controlnet-tiny', { seed: 5 });
  writeRandomControlNet(m.cnXl, 'controlnet-sdxl-tiny', { seed: 6 });
  writeRandomControlNetFile(m.cnXlFile, 'controlnet-sdxl-tiny', { seed: 6 });
  made = m;
  return m;
}

/** A copy of a ControlNet folder with some tensors changed (`edit` returns the new values, or undefined to keep them). */
export function editControlNet(src: string, dst: string, edit: (name: string, data: Float32Array, shape: readonly number[]) => Float32Array | undefined): string {
  mkdirSync(dst, { recursive: true });
  cpSync(join(src, 'config.json'), join(dst, 'config.json'));
  const f = SafetensorsFile.open(join(src, 'diffusion_pytorch_model.safetensors'));
  const tensors: Record<string, TensorToWrite> = {};
  for (const name of [...f.tensors.keys()].sort()) {
    const shape = f.info(name).shape;
    const data = f.readFloat32(name);
    tensors[name] = { dtype: 'F32', shape, data: edit(name, data, shape) ?? data };
  }
  writeSafetensors(join(dst, 'diffusion_pytorch_model.safetensors'), tensors, { format: 'pt' });
  return dst;
}
