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
import type { RgbImage } from '../io/png.js';
import { controlImageScale, conditioningScales, downResidualCount, type ControlNet, type ControlNetConfig } from '../models/controlnet.js';
import type { ControlResiduals, UNetConfig } from '../models/unet.js';
import type { Tensor } from '../tensor.js';
import type { Conditioning } from './conditioning-sdxl.js';
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
  throw new Error(msg);
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
  /** The control image for the full batch (both guidance halves) and for the conditional half. */
  full: Tensor;
  half: Tensor;
  condOnly: boolean;
  scales: number[];
}

function repeatBatch(t: Tensor, n: number): Tensor {
  const data = new Float32Array(t.data.length * n);
  for (let i = 0; i < n; i++) data.set(t.data, i * t.data.length);
  return { data, dims: [n, ...t.dims.slice(1)] };
}

/** Rows [from, from + n) of a batch. */
function rows(t: Tensor, from: number, n: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  return { data: t.data.subarray(from * per, (from + n) * per), dims: [n, ...t.dims.slice(1)] };
}

export interface ControlStepInput {
  /** Step index in the pass's timesteps and their count (the keep mask's i and len(timesteps)). */
  index: number;
  count: number;
  timestep: number;
  /** The U-Net's input this step: scaled latents, doubled when guided. */
  input: Tensor;
  conditioning: Conditioning;
  attentionActive: boolean;
}

/** One pass's ControlNets: the control images at the pass's size, and the residuals for each step. */
export class ControlNetPass {
  private readonly units: PassUnit[];

  constructor(
    units: readonly ResolvedControlUnit[],
    size: { width: number; height: number },
    private readonly batch: number,
    guided: boolean,
    /** The U-Net's residual inputs' shapes at this size (the zeros of a step no unit acts on). */
    private readonly residualShapes: readonly (readonly number[])[],
    attention: AttentionOptions,
    hires: boolean,
  ) {
    this.units = units.map((unit) => {
      unit.model.setAttention(attention);
      const image = controlMapsToTensor([resizeControlMap(unit.map, size.width, size.height, unit.resizeMode)]);
      const count = downResidualCount(unit.model.config) + 1;
      // A1111 softens canny in the hires pass, whatever the control mode.
      const soft = unit.controlMode !== 'balanced' || (hires && unit.preprocessor === 'canny');
      const scales = soft ? softInjectionScales(count, unit.scale) : conditioningScales(unit.model.config, unit.scale, unit.guessMode);
      const condOnly = guided && (unit.guessMode || unit.controlMode === 'controlnet' || unit.model.config.globalPoolConditions);
      return { unit, full: repeatBatch(image, guided ? 2 * batch : batch), half: repeatBatch(image, batch), condOnly, scales };
    });
  }

  /** The summed residuals of the units that act at this step (zeros when none does). */
  async residuals(s: ControlStepInput): Promise<ControlResiduals> {
    const sum = this.residualShapes.map((d) => ({ data: new Float32Array(d.reduce((a, b) => a * b, 1)), dims: [...d] }));
    const b = this.batch;
    for (const p of this.units) {
      if (!controlNetKeep(s.index, s.count, p.unit.start, p.unit.end)) continue;
      const c = s.conditioning;
      // Guess mode and "ControlNet is more important": the conditional half only; the unconditional half gets nothing.
      const half = <T extends Tensor | undefined>(t: T): T => (p.condOnly && t ? (rows(t, b, b) as T) : t);
      const out = await p.unit.model.forward(half(s.input), s.timestep, half(c.encoderHiddenStates), p.condOnly ? p.half : p.full, {
        conditioningScale: p.scales,
        attentionActive: s.attentionActive,
        textEmbeds: half(c.added?.textEmbeds),
        timeIds: half(c.added?.timeIds),
      });
      [...out.down, out.mid].forEach((r, i) => {
        const target = sum[i]!.data;
        const offset = p.condOnly ? target.length / 2 : 0;
        for (let k = 0; k < r.data.length; k++) target[offset + k] = target[offset + k]! + r.data[k]!;
      });
    }
    return { down: sum.slice(0, -1), mid: sum[sum.length - 1]! };
  }
}
