/**
 * ControlNet in the denoising loop, as diffusers' StableDiffusion(XL)ControlNetPipeline (and its
 * img2img variant) runs it: each unit's control image prepared for the pass's size (batch
 * repeated, doubled for classifier-free guidance), a keep mask per step from guidance start/end,
 * the ControlNet run on the step's model input, and the residuals of several units summed
 * (MultiControlNetModel) before the U-Net adds them. Guess mode (diffusers) and A1111's control
 * modes run the ControlNet on the conditional half only; A1111's "prompt is more important" /
 * "ControlNet is more important" weigh the residuals with its soft-injection scales.
 */
import type { AttentionOptions } from '../attention/options.js';
import { UserError } from '../errors.js';
import type { RgbImage } from '../io/png.js';
import { controlImageScale, conditioningScales, downResidualCount, residualShapes, type ControlNet, type ControlNetConfig } from '../models/controlnet.js';
import { shallowSkipCount, type CachePoint } from '../models/unet-cache.js';
import type { ControlResiduals, UNetConfig, UNetEncoderConfig } from '../models/unet.js';
import { doubleBatch, type Tensor } from '../tensor.js';
import type { Conditioning } from './conditioning-sdxl.js';
import { cropViews, type ViewBatch } from './multidiffusion.js';
import {
  controlMapsToTensor,
  CONTROL_PREPROCESSORS,
  pixelPerfectResolution,
  PREPROCESSOR_SLIDERS,
  preprocessControl,
  resizeControlMap,
  RESIZE_MODES,
  sliderValue,
  type ControlMap,
  type ControlPreprocessor,
  type ResizeMode,
} from './control-image.js';

export const CONTROL_MODES = ['balanced', 'prompt', 'controlnet'] as const;
export type ControlMode = (typeof CONTROL_MODES)[number];
export const A1111_CONTROL_MODES: Record<ControlMode, string> = {
  balanced: 'Balanced',
  prompt: 'My prompt is more important',
  controlnet: 'ControlNet is more important',
};

/** One ControlNet and its control image (A1111's "ControlNet unit"). */
export interface ControlNetUnit {
  /** A ControlNet from `StableDiffusion.loadControlNet`, or its folder / `.safetensors` file. */
  model: ControlNet | string;
  /** The control picture; default: the init image (image-to-image). */
  image?: RgbImage;
  /** For the inpaint preprocessors: white repaints; default: the generation's inpainting mask. */
  mask?: RgbImage;
  /** A1111's preprocessors: 'none' (default: the image is the control map), 'canny', 'tile_resample', 'inpaint', 'inpaint_only'. */
  preprocessor?: ControlPreprocessor;
  /** Preprocessor resolution (canny: short side; default 512) and thresholds (canny 100 / 200; tile_resample's rate 1). */
  processorRes?: number;
  thresholdA?: number;
  thresholdB?: number;
  /** The preprocessor resolution that gives a map of the generation's size (A1111's pixel perfect). */
  pixelPerfect?: boolean;
  /** Conditioning scale (A1111's weight), default 1. */
  scale?: number;
  /** Fraction of the steps where the unit starts / stops acting (diffusers' control_guidance_start / end); default 0 / 1. */
  start?: number;
  end?: number;
  /** diffusers' guess mode: residuals scaled by logspace(−1, 0), the ControlNet on the conditional half only. */
  guessMode?: boolean;
  /** A1111's control mode (default 'balanced'); exclusive with guessMode. */
  controlMode?: ControlMode;
  /** How a control map of another aspect meets the generation's size (default 'crop-and-resize', A1111's). */
  resizeMode?: ResizeMode;
}

/** A unit's settings with the defaults filled in, as summaries and the infotext report them. */
export interface ControlUnitSettings {
  preprocessor: ControlPreprocessor;
  processorRes: number;
  thresholdA: number;
  thresholdB: number;
  pixelPerfect: boolean;
  scale: number;
  start: number;
  end: number;
  guessMode: boolean;
  controlMode: ControlMode;
  resizeMode: ResizeMode;
}

/** A unit with its model loaded and its control map made. */
export interface ResolvedControlUnit extends ControlUnitSettings {
  model: ControlNet;
  /** The preprocessed map, before it meets a pass's size. */
  map: ControlMap;
}

function fail(msg: string): never {
  throw new UserError(msg);
}

function familyName(crossAttentionDim: number): string {
  return { 768: 'SD 1.x', 1024: 'SD 2.x', 2048: 'SDXL' }[crossAttentionDim] ?? `a model with cross_attention_dim ${crossAttentionDim}`;
}

/**
 * Refuses a ControlNet whose residuals or conditioning do not fit the U-Net (an SD 1.5 ControlNet
 * on SDXL, …); `vaeScale`, when known, must be the scale its conditioning embedding downsamples by.
 */
export function checkControlNetFits(name: string, c: ControlNetConfig, unet: UNetConfig, vaeScale?: number): void {
  const same = (a: readonly unknown[], b: readonly unknown[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);
  if (c.crossAttentionDim !== unet.crossAttentionDim || (c.textTime === null) !== (unet.textTime === null)) {
    fail(`ControlNet ${name} is for ${familyName(c.crossAttentionDim)}${c.textTime ? ' (text_time)' : ''}, but the model is ${familyName(unet.crossAttentionDim)}${unet.textTime ? ' (text_time)' : ''}: use a ControlNet made for this model's family`);
  }
  if (c.inChannels !== unet.inChannels || !same(c.blockOutChannels, unet.blockOutChannels) || !same(c.downBlockTypes, unet.downBlockTypes) || c.layersPerBlock !== unet.layersPerBlock) {
    fail(`ControlNet ${name} has another down path than the model's U-Net (block_out_channels ${JSON.stringify(c.blockOutChannels)} vs ${JSON.stringify(unet.blockOutChannels)}); it was trained for another base model`);
  }
  if (vaeScale !== undefined && controlImageScale(c) !== vaeScale) {
    fail(`ControlNet ${name} maps its control image to 1/${controlImageScale(c)} of its size, but the model's VAE to 1/${vaeScale}: it was trained for another base model`);
  }
}

/** Options checked and defaults filled in; the control map made (`source` supplies the image and mask a unit leaves out). */
export function resolveControlUnit(
  u: ControlNetUnit,
  model: ControlNet,
  index: number,
  target: { width: number; height: number },
  source: { image?: RgbImage; mask?: Uint8Array },
): ResolvedControlUnit {
  const what = `controlnets[${index}]`;
  const preprocessor = u.preprocessor ?? 'none';
  if (!CONTROL_PREPROCESSORS.includes(preprocessor)) fail(`${what}: unknown preprocessor "${String(preprocessor)}"; use one of ${CONTROL_PREPROCESSORS.join(', ')}`);
  const resizeMode = u.resizeMode ?? 'crop-and-resize';
  if (!RESIZE_MODES.includes(resizeMode)) fail(`${what}: unknown resize mode "${String(resizeMode)}"; use one of ${RESIZE_MODES.join(', ')}`);
  if (u.controlMode !== undefined && !CONTROL_MODES.includes(u.controlMode)) fail(`${what}: unknown control mode "${String(u.controlMode)}"; use one of ${CONTROL_MODES.join(', ')}`);
  if (u.guessMode && u.controlMode !== undefined && u.controlMode !== 'balanced') {
    fail(`${what}: guessMode (diffusers) and controlMode "${u.controlMode}" (A1111) are two ways to favour the ControlNet: choose one`);
  }
  const scale = u.scale ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale)) fail(`${what}: scale must be a number; got ${JSON.stringify(u.scale)}`);
  const start = u.start ?? 0;
  const end = u.end ?? 1;
  for (const [k, v] of [['start', start], ['end', end]] as const) {
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(`${what}: ${k} must be a fraction of the steps in [0, 1]; got ${JSON.stringify(v)}`);
  }
  if (start >= end) fail(`${what}: start (${start}) must be below end (${end}); the unit would act on no step`);
  const image = u.image ?? source.image ?? fail(`${what}: no control image: give the unit an image (or use it with an init image, which it then takes)`);
  const inpaint = preprocessor === 'inpaint' || preprocessor === 'inpaint_only';
  let mask: Uint8Array | undefined;
  if (inpaint) {
    if (u.mask) {
      if (u.mask.width !== image.width || u.mask.height !== image.height) fail(`${what}: the mask is ${u.mask.width}x${u.mask.height} but the image ${image.width}x${image.height}; they must match`);
      mask = u.mask.data.filter((_, i) => i % 3 === 0);
    } else if (u.image === undefined && source.mask) {
      mask = source.mask;
    } else {
      fail(`${what}: the ${preprocessor} preprocessor needs a mask (white = repaint): give the unit a mask, or use it for inpainting (init image + mask) without an image of its own`);
    }
    // A1111 runs inpaint_only as the plain inpaint preprocessor when the generation inpaints itself.
    if (preprocessor === 'inpaint_only' && !source.mask) {
      fail(`${what}: inpaint_only is offered for inpainting (init image + mask), where A1111 runs it as "inpaint" (inpaint_global_harmonious); use "inpaint" to condition a text-to-image generation`);
    }
  }
  const sliders = PREPROCESSOR_SLIDERS[preprocessor];
  const pixelPerfect = u.pixelPerfect ?? false;
  const processorRes = pixelPerfect && sliders.resolution ? pixelPerfectResolution(image, target.width, target.height, resizeMode) : sliderValue(sliders.resolution, u.processorRes);
  const thresholdA = sliderValue(sliders.a, u.thresholdA);
  const thresholdB = sliderValue(sliders.b, u.thresholdB);
  const map = preprocessControl(image, mask, preprocessor, { resolution: processorRes, thresholdA, thresholdB });
  return { model, preprocessor, processorRes, thresholdA, thresholdB, pixelPerfect, scale, start, end, guessMode: u.guessMode ?? false, controlMode: u.controlMode ?? 'balanced', resizeMode, map };
}

/** diffusers' controlnet_keep: a unit acts at step `index` of `count` unless index/count < start or (index + 1)/count > end. */
export function controlNetKeep(index: number, count: number, start: number, end: number): boolean {
  return !(index / count < start || (index + 1) / count > end);
}

/** A1111's soft injection: weight · 0.825^(12 − i) for residual i (13 in SD 1.x, the first 10 in SDXL). */
export function softInjectionScales(count: number, weight: number): number[] {
  return Array.from({ length: count }, (_, i) => weight * 0.825 ** (12 - i));
}

interface PassUnit {
  unit: ResolvedControlUnit;
  /** The control image at the pass's size, [1, C, H, W]. */
  image: Tensor;
  /** The ControlNet sees the prompt's half only (guess mode, "ControlNet is more important", global pooling). */
  condOnly: boolean;
  scales: number[];
}

/** Each row of a batch `n` times in a row (view-major batches: each view's rows together). */
function repeatRows(t: Tensor, n: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  const data = new Float32Array(t.data.length * n);
  for (let r = 0; r < t.dims[0]!; r++) for (let i = 0; i < n; i++) data.set(t.data.subarray(r * per, (r + 1) * per), (r * n + i) * per);
  return { data, dims: [t.dims[0]! * n, ...t.dims.slice(1)] };
}

/** Rows [from, from + n) of a batch. */
function rows(t: Tensor, from: number, n: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  return { data: t.data.subarray(from * per, (from + n) * per), dims: [n, ...t.dims.slice(1)] };
}

export interface ControlStepInput {
  /** The evaluation's index in the pass (the keep mask's i). */
  index: number;
  timestep: number;
  /** The U-Net's input this evaluation: scaled latents (of a batch of views when tiled), both guidance halves when `guided`. */
  input: Tensor;
  conditioning: Conditioning;
  /** Whether the input holds both guidance halves (negative first); false for an unguided pass and NGMS's prompt-only calls. */
  guided: boolean;
  /** The input is the negative half alone (a guided evaluation split in two): units that act on the prompt's half alone add nothing. */
  negativeOnly?: boolean;
  attentionActive: boolean;
  /** MultiDiffusion: the views the input holds, each taking its own part of the control image. */
  views?: ViewBatch;
  /** DeepCache's shallow step: only the residuals of the skips above this cache point. */
  shallow?: CachePoint;
}

/**
 * One pass's ControlNets: the control images at the pass's size, and the residuals for each U-Net
 * evaluation. Under MultiDiffusion each view takes the control image's rectangle under it (the
 * view's latent rectangle times the VAE's scale, wrapping around a circular canvas), as the
 * U-Net sees only its view. On DeepCache's shallow steps the ControlNet runs only its down path
 * above the cache point: the U-Net's shallow graph consumes those skips alone (its deeper skips
 * and mid block are the cached feature's), so these residuals are exactly the ones that act.
 */
export class ControlNetPass {
  private readonly units: PassUnit[];

  constructor(
    units: readonly ResolvedControlUnit[],
    size: { width: number; height: number },
    private readonly batch: number,
    /** The evaluations in the pass (the keep mask's len(timesteps)). */
    private readonly count: number,
    private readonly unet: UNetEncoderConfig,
    attention: AttentionOptions,
    hires: boolean,
  ) {
    this.units = units.map((unit) => {
      unit.model.setAttention(attention);
      const n = downResidualCount(unit.model.config) + 1;
      // A1111 softens canny in the hires pass, whatever the control mode.
      const soft = unit.controlMode !== 'balanced' || (hires && unit.preprocessor === 'canny');
      const scales = soft ? softInjectionScales(n, unit.scale) : conditioningScales(unit.model.config, unit.scale, unit.guessMode);
      const condOnly = unit.guessMode || unit.controlMode === 'controlnet' || unit.model.config.globalPoolConditions;
      return { unit, image: controlMapsToTensor([resizeControlMap(unit.map, size.width, size.height, unit.resizeMode)]), condOnly, scales };
    });
  }

  /** Sessions each ControlNet keeps open: one per graph the pass alternates between (DeepCache's shallow steps, NGMS's batch sizes). */
  async keepSessions(slots: number): Promise<void> {
    await Promise.all([...new Set(this.units.map((p) => p.unit.model))].map((m) => m.keepSessions(slots)));
  }

  /** The control image for one guidance half of the input: each view's rectangle (or the whole image), each repeated for the batch. */
  private image(p: PassUnit, views: ViewBatch | undefined): Tensor {
    if (!views) return repeatRows(p.image, this.batch);
    const s = p.image.dims[2]! / views.canvas[0];
    return repeatRows(cropViews(p.image, views.views.map((v) => ({ top: v.top * s, left: v.left * s, height: v.height * s, width: v.width * s }))), this.batch);
  }

  /** The summed residuals of the units that act at this evaluation (zeros when none does). */
  async residuals(s: ControlStepInput): Promise<ControlResiduals> {
    const [n, , h, w] = s.input.dims as [number, number, number, number];
    const all = residualShapes(this.unet, n, h, w);
    const shapes = s.shallow ? all.slice(0, shallowSkipCount(this.unet, s.shallow)) : all;
    const sum = shapes.map((d) => new Float32Array(d.reduce((a, b) => a * b, 1)));
    const half = s.guided ? n / 2 : n;
    for (const p of this.units) {
      if (!controlNetKeep(s.index, this.count, p.unit.start, p.unit.end) || (s.negativeOnly && p.condOnly)) continue;
      // Guess mode and "ControlNet is more important": the conditional half only; the unconditional half gets nothing.
      const condOnly = s.guided && p.condOnly;
      const pick = <T extends Tensor | undefined>(t: T): T => (condOnly && t ? (rows(t, half, half) as T) : t);
      const image = this.image(p, s.views);
      const c = s.conditioning;
      const args = [pick(s.input), s.timestep, pick(c.encoderHiddenStates), s.guided && !condOnly ? doubleBatch(image) : image] as const;
      const opts = { conditioningScale: p.scales, attentionActive: s.attentionActive, textEmbeds: pick(c.added?.textEmbeds), timeIds: pick(c.added?.timeIds) };
      const out: ControlResiduals = s.shallow ? await p.unit.model.forwardShallow(...args, s.shallow, opts) : await p.unit.model.forward(...args, opts);
      [...out.down, ...(out.mid ? [out.mid] : [])].forEach((r, i) => {
        const target = sum[i]!;
        const offset = condOnly ? target.length / 2 : 0;
        for (let k = 0; k < r.data.length; k++) target[offset + k] = target[offset + k]! + r.data[k]!;
      });
    }
    const tensors = sum.map((data, i) => ({ data, dims: shapes[i]! }));
    return s.shallow ? { down: tensors } : { down: tensors.slice(0, -1), mid: tensors[tensors.length - 1]! };
  }
}
