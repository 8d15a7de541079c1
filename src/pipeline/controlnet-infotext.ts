/**
 * ControlNet units in the PNG `parameters` as A1111's ControlNet extension writes them:
 *   ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1.0, Resize Mode: Crop and Resize,
 *   Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False,
 *   Control Mode: Balanced"
 * (Python's str() of each field; the model named with A1111's short hash), and read back.
 * diffusers' guess mode, which the extension lacks, adds `Guess Mode: True`.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { findComponent } from '../io/model-folder.js';
import { A1111_RESIZE_MODES, CONTROL_PREPROCESSORS, PREPROCESSOR_LABELS, type ControlPreprocessor, type ResizeMode } from './control-image.js';
import { A1111_CONTROL_MODES, type ControlMode, type ControlUnitSettings, type ResolvedControlUnit } from './controlnet.js';
import { infotextNumber, pyFloat } from './infotext-values.js';
import { UserError } from '../errors.js';

/** Hashes by file, size and time: model lists hash every file on each request. */
const hashes = new Map<string, string>();

/**
 * A1111's model hash (`sd_models.model_hash`, what the extension lists models by): the first
 * 8 hex digits of the sha256 of the 64 KiB at offset 1 MiB. A folder's is its weights file's.
 */
export function a1111ModelHash(path: string): string {
  const file = statSync(path).isDirectory() ? findComponent(path, 'controlnet', { classNames: ['ControlNetModel'] }).weightFiles[0]! : path;
  const st = statSync(file);
  const key = `${file}:${st.size}:${st.mtimeMs}`;
  let hash = hashes.get(key);
  if (hash === undefined) {
    const fd = openSync(file, 'r');
    try {
      const buf = Buffer.alloc(0x10000);
      const n = readSync(fd, buf, 0, buf.length, 0x100000);
      hash = createHash('sha256').update(buf.subarray(0, n)).digest('hex').slice(0, 8);
    } finally {
      closeSync(fd);
    }
    hashes.set(key, hash);
  }
  return hash;
}

const pyBool = (v: boolean): string => (v ? 'True' : 'False');

/** The extension's `ControlNet N` value for a unit. */
export function controlNetInfotext(u: ResolvedControlUnit): string {
  const fields: [string, string][] = [
    ['Module', PREPROCESSOR_LABELS[u.preprocessor] ?? u.preprocessor],
    ['Model', `${u.model.name} [${a1111ModelHash(u.model.path)}]`],
    ['Weight', pyFloat(u.scale)],
    ['Resize Mode', A1111_RESIZE_MODES[u.resizeMode]],
    ['Processor Res', String(u.processorRes)],
    ['Threshold A', pyFloat(u.thresholdA)],
    ['Threshold B', pyFloat(u.thresholdB)],
    ['Guidance Start', pyFloat(u.start)],
    ['Guidance End', pyFloat(u.end)],
    ['Pixel Perfect', pyBool(u.pixelPerfect)],
    ['Control Mode', A1111_CONTROL_MODES[u.controlMode]],
  ];
  if (u.guessMode) fields.push(['Guess Mode', 'True']);
  return fields.map(([k, v]) => `${k}: ${v}`).join(', ');
}

/** What a unit ran with, for summaries (`--json`, the result's settings): its settings and its model's name and path. */
export interface ControlNetSettings extends ControlUnitSettings {
  model: string;
  path: string;
}

export function controlNetSettings(u: ResolvedControlUnit): ControlNetSettings {
  const settings = Object.fromEntries(Object.entries(u).filter(([k]) => k !== 'model' && k !== 'map')) as unknown as ControlUnitSettings;
  return { ...settings, model: u.model.name, path: u.model.path };
}

/** A unit read back from an infotext: the model by name (no hash), everything but the image. */
export interface InfotextControlUnit {
  model: string;
  preprocessor: ControlPreprocessor;
  scale: number;
  resizeMode: ResizeMode;
  processorRes?: number;
  thresholdA?: number;
  thresholdB?: number;
  start: number;
  end: number;
  pixelPerfect: boolean;
  controlMode: ControlMode;
  guessMode: boolean;
}

function lookup<T extends string>(what: string, value: string | undefined, table: Record<T, string>, fallback: T): T {
  if (value === undefined) return fallback;
  const hit = (Object.keys(table) as T[]).find((k) => table[k].toLowerCase() === value.toLowerCase() || k === value);
  if (!hit) throw new UserError(`parameters: ControlNet ${what} "${value}" is not one of ${Object.values(table).join(', ')}`);
  return hit;
}

/** A preprocessor by the extension's name or label (`inpaint_global_harmonious`). */
function preprocessorByLabel(key: string, label: string): ControlPreprocessor {
  if ((CONTROL_PREPROCESSORS as readonly string[]).includes(label)) return label as ControlPreprocessor;
  const named = (Object.keys(PREPROCESSOR_LABELS) as ControlPreprocessor[]).find((k) => PREPROCESSOR_LABELS[k] === label);
  if (named) return named;
  throw new UserError(`parameters: ${key} uses preprocessor "${label}", which todo-sd does not have (${CONTROL_PREPROCESSORS.join(', ')}): make its control map elsewhere and give it with preprocessor none`);
}

/** The `ControlNet 0`, `ControlNet 1`, … units of an infotext, in order (the extension's `ControlNetUnit.parse`). */
export function controlNetsFromInfotext(settings: Readonly<Record<string, string>>): { units: InfotextControlUnit[]; keys: string[] } {
  const keys = Object.keys(settings)
    .filter((k) => /^ControlNet \d+$/.test(k))
    .sort((a, b) => Number(a.slice(11)) - Number(b.slice(11)));
  const units = keys.map((key) => {
    const f: Record<string, string> = {};
    for (const item of settings[key]!.split(',')) {
      const at = item.indexOf(': ');
      if (at < 0) throw new UserError(`parameters: "${key}" holds "${item.trim()}", which is not "Field: value"`);
      f[item.slice(0, at).trim()] = item.slice(at + 2).trim();
    }
    const preprocessor = preprocessorByLabel(key, f.Module ?? 'none');
    const model = (f.Model ?? '').replace(/\s*\[[0-9a-f]+\]$/i, '');
    if (model === '' || model === 'None') throw new UserError(`parameters: ${key} names no model`);
    const num = (field: string): number | undefined => infotextNumber(f, field);
    const resolution = num('Processor Res');
    const thresholdA = num('Threshold A');
    const thresholdB = num('Threshold B');
    return {
      model,
      preprocessor,
      scale: num('Weight') ?? 1,
      resizeMode: lookup('Resize Mode', f['Resize Mode'], A1111_RESIZE_MODES, 'crop-and-resize'),
      ...(resolution !== undefined && resolution > 0 ? { processorRes: resolution } : {}),
      ...(thresholdA !== undefined ? { thresholdA } : {}),
      ...(thresholdB !== undefined ? { thresholdB } : {}),
      start: num('Guidance Start') ?? 0,
      end: num('Guidance End') ?? 1,
      pixelPerfect: f['Pixel Perfect'] === 'True',
      controlMode: lookup('Control Mode', f['Control Mode'], A1111_CONTROL_MODES, 'balanced'),
      guessMode: f['Guess Mode'] === 'True',
    };
  });
  return { units, keys };
}

