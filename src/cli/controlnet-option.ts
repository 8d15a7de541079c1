/**
 * ControlNet on the command line: `--controlnet MODEL:IMAGE[:WEIGHT[:START[:END]]]` per unit
 * (repeatable), and per-unit settings as one value for every unit or a comma-separated list with
 * one value per unit (`--control-preprocessor canny,none`). MODEL is a ControlNet folder or
 * `.safetensors` file, or a name looked up in `--controlnet-dir`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import type { RgbImage } from '../io/png.js';
import { CONTROL_PREPROCESSORS, RESIZE_MODES, type ResizeMode } from '../pipeline/control-image.js';
import { CONTROL_MODES, type ControlMode, type ControlNetUnit } from '../pipeline/controlnet.js';
import type { InfotextControlUnit } from '../pipeline/controlnet-infotext.js';
import { CONTROLNET_EXTENSIONS } from '../models/controlnet.js';
import { UserError } from '../errors.js';

export interface ControlNetSpec {
  model: string;
  image: string;
  scale?: number;
  start?: number;
  end?: number;
}

/** MODEL:IMAGE followed by up to three numbers; MODEL and IMAGE may hold ':' themselves (the numbers are taken from the end). */
export function parseControlNetOption(v: string, previous: ControlNetSpec[] = []): ControlNetSpec[] {
  const parts = v.split(':');
  const numbers: number[] = [];
  while (parts.length > 2 && numbers.length < 3 && /^\s*-?\d*\.?\d+\s*$/.test(parts[parts.length - 1]!)) numbers.unshift(Number(parts.pop()));
  if (parts.length < 2) throw new InvalidArgumentError(`--controlnet ${v}: write MODEL:IMAGE[:WEIGHT[:START[:END]]], e.g. control_v11p_sd15_canny.safetensors:edges.png:0.8`);
  const image = parts.pop()!;
  const model = parts.join(':');
  if (model === '' || image === '') throw new InvalidArgumentError(`--controlnet ${v}: the model and the control image must both be given (MODEL:IMAGE)`);
  const [scale, start, end] = numbers;
  return [...previous, { model, image, ...(scale !== undefined && { scale }), ...(start !== undefined && { start }), ...(end !== undefined && { end }) }];
}

/** The per-unit settings flags, as typed (comma lists unsplit). */
export interface ControlFlags {
  controlnet: ControlNetSpec[];
  controlnetDir?: string;
  controlImage: string[];
  controlMask?: string;
  controlPreprocessor?: string;
  controlMode?: string;
  controlResize?: string;
  controlRes?: string;
  controlThresholdA?: string;
  controlThresholdB?: string;
  controlPixelPerfect?: boolean;
  controlGuessMode?: boolean;
}

/** A list flag's value for each of `n` units: one value for all, or one per unit. */
function perUnit(flag: string, v: string | undefined, n: number): (string | undefined)[] {
  if (v === undefined) return Array<undefined>(n).fill(undefined);
  const list = v.split(',').map((s) => s.trim());
  if (list.length === 1) return Array<string>(n).fill(list[0]!);
  if (list.length !== n) throw new UserError(`--${flag} ${v}: give one value for every unit, or one per unit (${n} ControlNet unit${n === 1 ? '' : 's'})`);
  return list;
}

function choice<T extends string>(flag: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw new UserError(`--${flag}: "${v}" is not one of ${allowed.join(', ')}`);
  return v as T;
}

function numberFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === '' || !Number.isFinite(n)) throw new UserError(`--${flag}: "${v}" is not a number`);
  return n;
}

/** A ControlNet by path, or by name in --controlnet-dir (NAME.safetensors, NAME.pth, … or the folder NAME). */
export function controlNetPath(model: string, dir: string | undefined): string {
  if (existsSync(model)) return model;
  for (const candidate of dir ? [...CONTROLNET_EXTENSIONS.map((e) => join(dir, `${model}${e}`)), join(dir, model)] : []) if (existsSync(candidate)) return candidate;
  throw new UserError(`ControlNet "${model}" not found${dir ? ` (neither a path nor in --controlnet-dir ${dir})` : ': give its folder or file (.safetensors, .pth), or a name with --controlnet-dir'}`);
}

/**
 * The units the flags describe; `fromPng` are the units a PNG's parameters name (used when no
 * --controlnet is given, their images from --control-image in order).
 */
export async function controlUnitsFromFlags(f: ControlFlags, readImage: (path: string, flag: string) => Promise<RgbImage>, fromPng: readonly InfotextControlUnit[] = []): Promise<ControlNetUnit[]> {
  if (f.controlnet.length === 0 && f.controlImage.length === 0) return [];
  const specs: (ControlNetSpec & Partial<InfotextControlUnit>)[] = f.controlnet.length > 0 ? f.controlnet : fromPng.map((u, i) => ({ ...u, image: f.controlImage[i] ?? '' }));
  if (f.controlnet.length === 0 && f.controlImage.length > 0 && f.controlImage.length !== fromPng.length) {
    throw new UserError(`--control-image was given ${f.controlImage.length} time(s), but the PNG names ${fromPng.length} ControlNet unit(s): give one image per unit, in order`);
  }
  const n = specs.length;
  const preprocessors = perUnit('control-preprocessor', f.controlPreprocessor, n);
  const modes = perUnit('control-mode', f.controlMode, n);
  const resizes = perUnit('control-resize', f.controlResize, n);
  const res = perUnit('control-res', f.controlRes, n);
  const ta = perUnit('control-threshold-a', f.controlThresholdA, n);
  const tb = perUnit('control-threshold-b', f.controlThresholdB, n);
  const masks = perUnit('control-mask', f.controlMask, n);
  const units: ControlNetUnit[] = [];
  for (const [i, s] of specs.entries()) {
    const unit: ControlNetUnit = {
      model: controlNetPath(s.model, f.controlnetDir),
      image: await readImage(s.image, '--controlnet'),
      preprocessor: choice('control-preprocessor', preprocessors[i], CONTROL_PREPROCESSORS) ?? s.preprocessor,
      controlMode: choice<ControlMode>('control-mode', modes[i], CONTROL_MODES) ?? s.controlMode,
      resizeMode: choice<ResizeMode>('control-resize', resizes[i], RESIZE_MODES) ?? s.resizeMode,
      processorRes: numberFlag('control-res', res[i]) ?? s.processorRes,
      thresholdA: numberFlag('control-threshold-a', ta[i]) ?? s.thresholdA,
      thresholdB: numberFlag('control-threshold-b', tb[i]) ?? s.thresholdB,
      pixelPerfect: f.controlPixelPerfect ?? s.pixelPerfect,
      guessMode: f.controlGuessMode ?? s.guessMode,
      scale: s.scale,
      start: s.start,
      end: s.end,
    };
    if (masks[i] !== undefined) unit.mask = await readImage(masks[i]!, '--control-mask');
    units.push(unit);
  }
  return units;
}
