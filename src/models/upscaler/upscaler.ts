/**
 * An image upscaling model from a `.pth` / `.pt` / `.safetensors` file: ESRGAN-style RRDBNet
 * (ESRGAN, Real-ESRGAN x4plus / x2plus, BSRGAN, the thousands of community ESRGAN models) or
 * Real-ESRGAN's SRVGGNetCompact, recognised from the tensor names and shapes as spandrel does.
 * The graph is built here and reads the weights where they are in the file. Images go in as RGB
 * in [0, 1] (the training convention of both architectures) and come back as 8-bit RGB.
 */
import { basename, extname } from 'node:path';
import { GraphBuilder, type GraphDef, type GraphOptions } from '../../graph/builder.js';
import type { WeightSource } from '../../graph/weights.js';
import type { RgbImage } from '../../io/png.js';
import type { TensorFile, TensorInfo } from '../../io/tensor-file.js';
import { openWeightsFile } from '../../io/weights-file.js';
import { resolveRuntime } from '../../runtime/provider.js';
import type { RuntimeOptions } from '../../runtime/session.js';
import type { Tensor } from '../../tensor.js';
import { checkInput, ComponentRuntime } from '../component.js';
import { CheckpointWeights, type CheckpointSlot } from '../single-file/weights.js';
import { buildCompactGraph, compactConfig, isCompact, type CompactConfig } from './compact.js';
import { buildEsrganGraph, esrganLayout, esrganModel, type EsrganConfig } from './esrgan.js';
import { padReflect, upscaleTiled, type TileOptions } from './tiling.js';
import { abortError, UserError } from '../../errors.js';

export type UpscalerConfig = EsrganConfig | CompactConfig;

export interface UpscaleOptions extends Partial<TileOptions> {
  /** Called after each tile. */
  onTile?: (done: number, total: number) => void;
  /** Aborting stops after the current tile; upscale then rejects with an Error named 'AbortError'. */
  signal?: AbortSignal;
}

/** Tiles of at most 512 input pixels a side, overlapping by 32 (16 pixels of context each side). */
export const DEFAULT_TILE: TileOptions = { tile: 512, overlap: 32 };

/** The upscaler's key names without a common wrapper prefix (`module.` from DataParallel, `netG.`). */
function stripPrefix(file: TensorFile): { keys: Map<string, TensorInfo>; prefix: string } {
  const names = [...file.tensors.keys()];
  const prefix = ['module.', 'netG.', 'generator.'].find((p) => names.length > 0 && names.every((n) => n.startsWith(p))) ?? '';
  return { keys: new Map([...file.tensors].map(([k, t]) => [k.slice(prefix.length), t])), prefix };
}

/** The architecture, its configuration and where each weight (by the reference code's names) is in the file. */
export function detectUpscaler(file: TensorFile): { config: UpscalerConfig; slots: Map<string, CheckpointSlot> } {
  const { keys, prefix } = stripPrefix(file);
  const withPrefix = (slots: Map<string, CheckpointSlot>): Map<string, CheckpointSlot> => new Map([...slots].map(([k, s]) => [k, { key: prefix + s.key }]));
  const layout = esrganLayout(keys);
  if (layout) {
    const { config, slots } = esrganModel(keys, layout);
    return { config, slots: withPrefix(slots) };
  }
  if (isCompact(keys)) return { config: compactConfig(keys), slots: withPrefix(new Map([...keys.keys()].map((k) => [k, { key: k }]))) };
  const seen = [...keys.keys()].slice(0, 4).join(', ') || 'no tensors';
  const sd = [...keys.keys()].some((k) => k.startsWith('model.diffusion_model.')) ? ' It is a Stable Diffusion checkpoint: pass it as the model, not as an upscaler.' : '';
  throw new UserError(
    `${basename(file.path)}: not an upscaler todo-sd knows (found ${seen}${keys.size > 4 ? ', …' : ''}); it reads ESRGAN / Real-ESRGAN RRDBNet models ` +
      `(conv_first + body.N.rdb1…, model.0 + model.1.sub.N.RDB1…, or RRDB_trunk.N…) and Real-ESRGAN's SRVGGNetCompact (body.N with PReLU).${sd}`,
  );
}

/** image [1, in, h, w] in [0, 1] → `upscaled` [1, out, h·scale, w·scale]. */
export function buildUpscalerGraph(cfg: UpscalerConfig, weights: WeightSource | undefined, shape: { height: number; width: number }, opts: GraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder('upscaler', weights, undefined, opts);
  const image = g.toCompute(g.input('image', [1, cfg.inChannels, shape.height, shape.width]));
  g.output(cfg.architecture === 'ESRGAN' ? buildEsrganGraph(g, image, cfg) : buildCompactGraph(g, image, cfg), 'upscaled');
  return g;
}


export interface UpscalerLoadOptions extends RuntimeOptions {
  /** The name it goes by (in PNG parameters, A1111's lists); default: the file name without its extension. */
  name?: string;
}

export class Upscaler {
  private constructor(
    readonly path: string,
    /** The name it goes by: A1111's for its named models (`R-ESRGAN 4x+`), else the file name without the extension. */
    readonly name: string,
    readonly config: UpscalerConfig,
    private readonly weights: CheckpointWeights,
    private readonly runtime: ComponentRuntime,
  ) {}

  /** `path`: an upscaler's `.pth`, `.pt` or `.safetensors` file. */
  static async load(path: string, opts: UpscalerLoadOptions = {}): Promise<Upscaler> {
    const { name, ...runtime } = opts;
    const file = openWeightsFile(path);
    const { config, slots } = detectUpscaler(file);
    if (config.inChannels !== 3 || config.outChannels !== 3) {
      throw new UserError(`${basename(path)}: a model for ${config.inChannels}-channel images (${config.outChannels} out); todo-sd upscales RGB images`);
    }
    const weights = new CheckpointWeights(file, 'upscaler', slots);
    // Missing or mis-shaped weights fail here, not at the first image.
    buildUpscalerGraph(config, weights, { height: 4, width: 4 });
    const rt = await resolveRuntime(runtime);
    return new Upscaler(path, name ?? basename(path, extname(path)), config, weights, new ComponentRuntime('upscaler', weights, { ...config }, rt));
  }

  get scale(): number {
    return this.config.scale;
  }

  graph(shape: { height: number; width: number }): GraphDef {
    return buildUpscalerGraph(this.config, this.weights, shape, this.runtime.graph).build();
  }

  /**
   * One pass of the model on [1, 3, h, w] values in [0, 1] → [1, 3, h·scale, w·scale], unclamped,
   * in tiles (`DEFAULT_TILE` unless given; tile 0: the whole image at once).
   */
  async forward(x: Tensor, o: UpscaleOptions = {}): Promise<Tensor> {
    checkInput('upscaler', 'image', x, [1, 3, null, null], 'batch 1, RGB, height, width');
    const [, , h, w] = x.dims as [number, number, number, number];
    const tiles = { tile: o.tile ?? DEFAULT_TILE.tile, overlap: o.overlap ?? DEFAULT_TILE.overlap };
    if (!Number.isInteger(tiles.tile) || tiles.tile < 0 || !Number.isInteger(tiles.overlap) || tiles.overlap < 0) {
      throw new UserError(`upscale: tile (${tiles.tile}) and overlap (${tiles.overlap}) must be non-negative integers`);
    }
    const m = this.config.architecture === 'ESRGAN' ? this.config.unshuffle : 1;
    const padded = padReflect(x.data, 3, h, w, m);
    const s = this.config.scale;
    const up = await upscaleTiled(padded.data, 3, padded.height, padded.width, s, m, tiles, async (tile, th, tw) => {
      if (o.signal?.aborted) throw abortError('upscaling');
      const shape = { height: th, width: tw };
      const out = await this.runtime.run(shape, () => this.graph(shape), [{ name: 'image', type: 'float32', value: { data: tile, dims: [1, 3, th, tw] } }]);
      return out.upscaled!.data as Float32Array;
    }, o.onTile);
    if (padded.height === h && padded.width === w) return { data: up, dims: [1, 3, h * s, w * s] };
    // Crop the reflection padding off again.
    const [H, W, PH, PW] = [h * s, w * s, padded.height * s, padded.width * s];
    const out = new Float32Array(3 * H * W);
    for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) out.set(up.subarray((c * PH + y) * PW, (c * PH + y) * PW + W), (c * H + y) * W);
    return { data: out, dims: [1, 3, H, W] };
  }

  /** One pass of the model on an 8-bit RGB image: `scale` times larger, clamped to [0, 1] and rounded to 8 bits. */
  async upscale(image: RgbImage, o: UpscaleOptions = {}): Promise<RgbImage> {
    const { width: w, height: h, data } = image;
    if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1 || data.length !== w * h * 3) {
      throw new UserError(`upscale: the image must be ${w}x${h} 8-bit RGB (${w * h * 3} bytes); got ${data.length} bytes`);
    }
    const planes = new Float32Array(3 * w * h);
    for (let p = 0; p < w * h; p++) for (let c = 0; c < 3; c++) planes[c * w * h + p] = data[p * 3 + c]! / 255;
    const up = await this.forward({ data: planes, dims: [1, 3, h, w] }, o);
    const [, , H, W] = up.dims as [number, number, number, number];
    const out = new Uint8Array(W * H * 3);
    for (let p = 0; p < W * H; p++) {
      for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round(Math.min(1, Math.max(0, up.data[c * W * H + p]!)) * 255);
    }
    return { width: W, height: H, data: out };
  }

  async dispose(): Promise<void> {
    await this.runtime.dispose();
  }
}

export function loadUpscaler(path: string, opts: UpscalerLoadOptions = {}): Promise<Upscaler> {
  return Upscaler.load(path, opts);
}
