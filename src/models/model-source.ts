/**
 * Where a component's config and weights come from: a diffusers folder (the model folder or the
 * component's own), a weights file inside a component folder, or a single-file checkpoint. The
 * graph builders see diffusers names and configs either way.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { WeightStore, type WeightFiles } from '../graph/weights.js';
import { findComponent } from '../io/model-folder.js';
import { SingleFileCheckpoint } from './single-file/checkpoint.js';
import { UserError } from '../errors.js';

export interface ComponentSource {
  config: Record<string, unknown>;
  weights: WeightFiles;
}

/** True when `path` is a file (a checkpoint) rather than a folder. */
export function isSingleFile(path: string): boolean {
  const p = resolve(path);
  return existsSync(p) && statSync(p).isFile();
}

/** A missing checkpoint file is named as a file (a missing folder is named by findComponent). */
export function checkModelFile(path: string): void {
  if (existsSync(path) || !/\.(safetensors|ckpt|pt|pth|bin)$/i.test(path)) return;
  throw new UserError(`model file ${path} not found`);
}

/** `name`: the component's folder name in a diffusers model (unet, vae, text_encoder, text_encoder_2). */
export function openComponent(source: string, name: string, classNames: readonly string[]): ComponentSource {
  const path = resolve(source);
  checkModelFile(path);
  if (isSingleFile(path)) {
    // A diffusers component's weights file, with its config.json beside it.
    if (existsSync(join(dirname(path), 'config.json'))) {
      const comp = findComponent(dirname(path), name, { classNames, needWeights: false });
      return { config: comp.config, weights: WeightStore.open([path], name) };
    }
    return SingleFileCheckpoint.open(path).component(name);
  }
  const comp = findComponent(path, name, { classNames });
  return { config: comp.config, weights: WeightStore.open(comp.weightFiles, name) };
}
