/**
 * MultiDiffusion (Bar-Tal et al. 2023, arXiv 2302.08113) as diffusers' StableDiffusionPanoramaPipeline
 * (0.26) runs it: every step, the latent canvas is cut into overlapping square views (`window`
 * latent pixels a side, `stride` apart: diffusers' get_views), each view takes one denoising step
 * on its own — with its own copy of the scheduler's state, classifier-free guidance per view,
 * `viewBatch` views per model call — and each latent pixel becomes the mean of the views that
 * cover it (value / count). With `circular`, views run past the right edge and wrap to the left
 * (360° panoramas), and the VAE decodes with wrapped latent columns on both sides
 * (decode_latents_with_padding).
 *
 * Two departures, both where diffusers goes wrong: where its views leave the far edge uncovered
 * (the canvas is not window + k·stride), diffusers leaves those latents at zero, and here one
 * more row or column of views is put flush with the edge; diffusers counts views on pixels / 8
 * whatever the VAE's scale, here on the real latent grid.
 *
 * The denoising loop owns the model: it hands `step` a ModelEvaluation, one guided model call on
 * a batch of views, so that what the loop does per call (ControlNet residuals, cached features,
 * skipped guidance) can act per view.
 */
import type { Scheduler } from '../scheduler/index.js';
import type { Tensor } from '../tensor.js';
import type { Conditioning } from './conditioning-sdxl.js';

export interface TilingOptions {
  /** View side in latent pixels (diffusers' window_size); default 64 (512 px on SD 1.x). */
  window?: number;
  /** Distance between neighbouring views in latent pixels; default 8. */
  stride?: number;
  /** Views per model call (diffusers' view_batch_size); default 1. */
  viewBatch?: number;
  /** Wrap views around the left and right edges, for a seamless 360° panorama; default false. */
  circular?: boolean;
}

export type Tiling = Required<TilingOptions>;

export const TILING_DEFAULTS: Tiling = { window: 64, stride: 8, viewBatch: 1, circular: false };

/** Most views in one model call: beyond this a batch only costs memory. */
const MAX_VIEW_BATCH = 64;

/** One view: rows [top, top + height), columns left … left + width − 1, taken modulo the canvas width when circular. */
export interface LatentView {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** What a model evaluation runs on: a batch of views of the canvas (index: the batch's place in the step). */
export interface ViewBatch {
  index: number;
  views: readonly LatentView[];
  /** The latent canvas [height, width]. */
  canvas: readonly [number, number];
}

/**
 * One guided model evaluation: the noise prediction for `input` (already scaled by the scheduler,
 * [views · batch, C, h, w], view-major) at timestep `t` of sampling step `step`. `views` says which
 * views the input holds; it is absent when the input is the whole canvas (no tiling).
 */
export type ModelEvaluation = (input: Tensor, t: number, step: number, views?: ViewBatch) => Promise<Tensor>;

function fail(msg: string): never {
  throw new Error(msg);
}

/** Checks the options and fills in the defaults; `minWindow`: the smallest grid the U-Net takes (2^downsamplings). */
export function resolveTiling(o: TilingOptions, minWindow: number): Tiling {
  const d = TILING_DEFAULTS;
  const t: Tiling = { window: o.window ?? d.window, stride: o.stride ?? d.stride, viewBatch: o.viewBatch ?? d.viewBatch, circular: o.circular ?? d.circular };
  if (!Number.isInteger(t.window) || t.window < minWindow || t.window > 1024) {
    fail(`tiling window must be an integer of latent pixels from ${minWindow} (the U-Net halves the grid ${Math.log2(minWindow)} times) to 1024; got ${t.window}`);
  }
  if (!Number.isInteger(t.stride) || t.stride < 1 || t.stride > t.window) {
    fail(`tiling stride must be an integer of latent pixels from 1 to the window (${t.window}): a larger stride leaves gaps between views; got ${t.stride}`);
  }
  if (!Number.isInteger(t.viewBatch) || t.viewBatch < 1 || t.viewBatch > MAX_VIEW_BATCH) fail(`tiling viewBatch must be an integer from 1 to ${MAX_VIEW_BATCH}; got ${t.viewBatch}`);
  if (typeof t.circular !== 'boolean') fail(`tiling circular must be true or false; got ${String(t.circular)}`);
  return t;
}

/** The starts of the views along one axis: diffusers' count rule, plus one view flush with the far edge where those leave it uncovered. */
function axisStarts(size: number, window: number, stride: number, circular: boolean): number[] {
  if (size <= window) return [0];
  const n = circular ? Math.floor(size / stride) : Math.floor((size - window) / stride) + 1;
  const starts = Array.from({ length: n }, (_, i) => i * stride);
  if (starts[n - 1]! + window < size) starts.push(size - window);
  return starts;
}

/** The views of a latent canvas, row by row (diffusers' order). A view larger than the canvas is cut to it, as diffusers' slicing does. */
export function latentViews(height: number, width: number, t: Tiling): LatentView[] {
  if (t.circular && width < t.window) {
    fail(`circular tiling wraps views of ${t.window} latent pixels around the canvas, which is only ${width} wide: use a window of at most ${width} or a wider image`);
  }
  const vh = Math.min(t.window, height);
  const vw = Math.min(t.window, width);
  const rows = axisStarts(height, t.window, t.stride, false);
  const cols = axisStarts(width, t.window, t.stride, t.circular);
  return rows.flatMap((top) => cols.map((left) => ({ top, left, height: vh, width: vw })));
}

/** The latents under each view, [views · B, C, h, w], view-major (diffusers' torch.cat of the slices). */
export function cropViews(x: Tensor, views: readonly LatentView[]): Tensor {
  const [b, c, h, w] = x.dims as [number, number, number, number];
  const { height: vh, width: vw } = views[0]!;
  const out = new Float32Array(views.length * b * c * vh * vw);
  let at = 0;
  for (const v of views) {
    for (let plane = 0; plane < b * c; plane++) {
      for (let y = 0; y < vh; y++) {
        const row = (plane * h + v.top + y) * w;
        for (let k = 0; k < vw; k++) out[at++] = x.data[row + ((v.left + k) % w)]!;
      }
    }
  }
  return { data: out, dims: [views.length * b, c, vh, vw] };
}

/** Adds each view's latents into `value` and 1 into `count` where it lies (count: one per latent pixel). */
function addViews(value: Float32Array, count: Float32Array, views: Tensor, placed: readonly LatentView[], dims: readonly number[]): void {
  const [b, c, h, w] = dims as [number, number, number, number];
  const { height: vh, width: vw } = placed[0]!;
  let at = 0;
  for (const v of placed) {
    for (let y = 0; y < vh; y++) for (let k = 0; k < vw; k++) count[(v.top + y) * w + ((v.left + k) % w)]! += 1;
    for (let plane = 0; plane < b * c; plane++) {
      for (let y = 0; y < vh; y++) {
        const row = (plane * h + v.top + y) * w;
        for (let k = 0; k < vw; k++) value[row + ((v.left + k) % w)]! += views.data[at++]!;
      }
    }
  }
}

/** The first `rows` entries of a tensor's leading axis. */
function leading(t: Tensor, rows: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  return rows === t.dims[0] ? t : { data: t.data.subarray(0, rows * per), dims: [rows, ...t.dims.slice(1)] };
}

/** `t` with its last `n`-th of the leading axis repeated until it has `rows` entries (a padded view batch). */
function padLeading(t: Tensor, rows: number, n: number): Tensor {
  if (rows === t.dims[0]) return t;
  const per = t.data.length / t.dims[0]!;
  const out = new Float32Array(rows * per);
  out.set(t.data);
  const last = t.data.subarray(t.data.length - n * per);
  for (let at = t.data.length; at < out.length; at += last.length) out.set(last, at);
  return { data: out, dims: [rows, ...t.dims.slice(1)] };
}

/** The views of one canvas, their scheduler states, and the MultiDiffusion step. */
export class MultiDiffusion {
  readonly views: readonly LatentView[];
  private readonly batches: LatentView[][];
  /** One scheduler per view batch, cloned before the first step (diffusers' views_scheduler_status). */
  private readonly schedulers: Scheduler[];
  private readonly canvas: [number, number];

  constructor(
    dims: readonly number[],
    readonly tiling: Tiling,
    scheduler: Scheduler,
  ) {
    this.canvas = [dims[2]!, dims[3]!];
    this.views = latentViews(this.canvas[0], this.canvas[1], tiling);
    this.batches = [];
    for (let i = 0; i < this.views.length; i += tiling.viewBatch) this.batches.push(this.views.slice(i, i + tiling.viewBatch));
    this.schedulers = this.batches.map(() => scheduler.clone());
  }

  /**
   * One denoising step of the whole canvas: each view batch is cropped, scaled and evaluated,
   * stepped by its own scheduler, and the results are averaged where views overlap. A last batch
   * with fewer views is padded with its last view for the model call, so that every call has
   * one shape (one onnxruntime session); the extra outputs are dropped.
   */
  async step(x: Tensor, t: number, step: number, evaluate: ModelEvaluation): Promise<Tensor> {
    const batch = x.dims[0]!;
    const spatial = this.canvas[0] * this.canvas[1];
    const value = new Float32Array(x.data.length);
    const count = new Float32Array(spatial);
    const size = this.batches[0]!.length;
    for (const [index, views] of this.batches.entries()) {
      const scheduler = this.schedulers[index]!;
      const latents = cropViews(x, views);
      const input = padLeading(scheduler.scaleModelInput(latents, t), size * batch, batch);
      const padded = views.length < size ? [...views, ...Array<LatentView>(size - views.length).fill(views[views.length - 1]!)] : views;
      const eps = await evaluate(input, t, step, { index, views: padded, canvas: this.canvas });
      addViews(value, count, scheduler.step(leading(eps, views.length * batch), t, latents), views, x.dims);
    }
    const data = value.map((v, i) => {
      const n = count[i % spatial]!;
      return n > 0 ? v / n : v;
    });
    return { data, dims: x.dims };
  }
}

/** Latents with `padding` columns wrapped from the other side added left and right (diffusers' decode_latents_with_padding). */
export function padCircular(x: Tensor, padding: number): Tensor {
  const [b, c, h, w] = x.dims as [number, number, number, number];
  const pw = w + 2 * padding;
  const out = new Float32Array(b * c * h * pw);
  for (let row = 0; row < b * c * h; row++) {
    for (let k = 0; k < pw; k++) out[row * pw + k] = x.data[row * w + ((k - padding + w) % w)]!;
  }
  return { data: out, dims: [b, c, h, pw] };
}

/** Columns [left, left + width) of an image tensor [B, C, H, W]. */
export function cropColumns(x: Tensor, left: number, width: number): Tensor {
  const [b, c, h, w] = x.dims as [number, number, number, number];
  const out = new Float32Array(b * c * h * width);
  for (let row = 0; row < b * c * h; row++) out.set(x.data.subarray(row * w + left, row * w + left + width), row * width);
  return { data: out, dims: [b, c, h, width] };
}

/**
 * Text conditioning for a call on `copies` views: each of its `halves` (uncond and cond when
 * guided) repeated once per view, matching the view-major input with its guided copy behind it.
 */
export function conditioningForViews(c: Conditioning, copies: number, halves: 1 | 2): Conditioning {
  if (copies === 1) return c;
  const repeat = (t: Tensor): Tensor => {
    const half = t.data.length / halves;
    const out = new Float32Array(t.data.length * copies);
    for (let h = 0; h < halves; h++) for (let v = 0; v < copies; v++) out.set(t.data.subarray(h * half, (h + 1) * half), (h * copies + v) * half);
    return { data: out, dims: [t.dims[0]! * copies, ...t.dims.slice(1)] };
  };
  return { ...c, encoderHiddenStates: repeat(c.encoderHiddenStates), ...(c.added && { added: { textEmbeds: repeat(c.added.textEmbeds), timeIds: repeat(c.added.timeIds) } }) };
}
