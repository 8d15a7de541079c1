/**
 * The tiled methods as users feel them: whole generations with dense attention and with each
 * method, interleaved (dense, method, method, dense, …) so the machine's drift cancels out of
 * the ratio of medians, at a canvas far past the model's own size. MultiDiffusion: a text-to-image
 * canvas denoised in views. SD upscale: a picture upscaled and redrawn in tiles. Reported: the
 * whole time, the time per denoising step (step intervals after each pass's or tile's first,
 * which holds session starts), and the peak resident memory of each run. An SD upscale can take
 * an upscaler model and a ControlNet (tile_resample on each tile, as Ultimate SD upscale users
 * run it), and where its tiles take hours, `maxTiles` runs the first few and extrapolates: the
 * first tile as timed (upscale and session starts included) plus the median of the later tiles
 * for each tile left.
 */
import type { AttentionOptions } from '../attention/options.js';
import type { RgbImage } from '../io/png.js';
import type { Upscaler } from '../models/upscaler/upscaler.js';
import type { BuiltinUpscaler } from '../pipeline/upscale-image.js';
import type { TilingOptions } from '../pipeline/multidiffusion.js';
import { StableDiffusion, type GenerateOptions, type StepInfo } from '../pipeline/stable-diffusion.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { SamplerName } from '../scheduler/index.js';
import { UserError } from '../errors.js';
import { median, peakRssMiB, resetPeak } from './machine.js';
import { interleaved, stats, type MethodSpec, type Stats } from './speed.js';

export type TiledBenchMode = 'multidiffusion' | 'sd-upscale';

export interface TiledBenchOptions extends RuntimeOptions {
  model: string;
  mode: TiledBenchMode;
  /** MultiDiffusion: the canvas; SD upscale: the picture before upscaling. */
  size: [number, number];
  tiling: TilingOptions;
  /** SD upscale: scale, tile (the request's width x height), overlap, strength; the picture, else a synthetic one. */
  scale: number;
  tile: [number, number];
  overlap: number;
  strength: number;
  initImage?: RgbImage;
  /** SD upscale: the enlargement, a built-in one or an upscaler model (default Lanczos). */
  upscaler?: BuiltinUpscaler | Upscaler;
  /** A ControlNet (folder or file) with the tile_resample preprocessor: on each SD upscale tile, or on a synthetic picture of the MultiDiffusion canvas. */
  controlnet?: string;
  /** SD upscale: time only the first n tiles (at least 2) of each run and extrapolate the rest. */
  maxTiles?: number;
  /** A TAESD (file or folder) that decodes instead of the model's VAE: the denoising measured without a decode of minutes. */
  taesd?: string;
  /** GenerateOptions.batchCondUncond (default true). */
  batchCondUncond?: boolean;
  steps: number;
  sampler: SamplerName;
  cfg: number;
  /** Methods compared with dense (dense itself is added). */
  methods: MethodSpec[];
  runs: number;
  onLog?: (m: string) => void;
}

export interface TiledRecord {
  type: 'tiled';
  mode: TiledBenchMode;
  size: [number, number];
  output: [number, number];
  method: string;
  /** MultiDiffusion: views per step; SD upscale: tiles. */
  parts: number;
  /** The attention as the U-Net ran it (ToDo's 'auto' resolved on a view or tile). */
  attention: AttentionOptions;
  total: Stats;
  denseInterleaved: Stats;
  /** median(dense) / median(method), whole generations. */
  speedup: number;
  step: Stats;
  denseStep: Stats;
  stepSpeedup: number;
  /** Highest resident memory of a run, MiB (the process's, model included). */
  peakMiB: number;
  densePeakMiB: number;
  /** SD upscale: the enlargement (lanczos, or the upscaler model's name). */
  upscaler?: string;
  controlnet?: string;
  /** 'taesd' where a TAESD decoded instead of the VAE. */
  decoder?: 'taesd';
  /** SD upscale with maxTiles: tiles run per generation (of `parts`); the totals are extrapolated. */
  tilesRun?: number;
  /** SD upscale: a tile's time after the first (which holds the upscale and session starts). */
  tile?: Stats;
  denseTile?: Stats;
  /**
   * Runs that finish (no maxTiles cut): the pipeline's denoising time over its steps (a
   * one-step run has no step interval; the first step's session start is in it) and the decode.
   */
  denoiseStep?: Stats;
  denseDenoiseStep?: Stats;
  decode?: Stats;
  denseDecode?: Stats;
}

interface Run {
  ms: number;
  stepMs: number[];
  /** SD upscale: each tile's time after the first. */
  tileMs: number[];
  tilesRun: number;
  /** A finished run's denoising per step and decode, ms. */
  denoiseStepMs?: number;
  decodeMs?: number;
  peakMiB: number;
  output: [number, number];
  parts: number;
  /** The attention as a view or tile ran it. */
  attention: AttentionOptions;
}

/** A smooth, deterministic picture to upscale when none is given. */
function syntheticPicture(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = Math.round(127.5 + 100 * Math.sin((x / width) * (3 + c) + (y / height) * (2 + c)));
    }
  }
  return { width, height, data };
}

export async function runTiledBench(o: TiledBenchOptions): Promise<TiledRecord[]> {
  const log = o.onLog ?? (() => {});
  if (o.maxTiles !== undefined && (o.mode !== 'sd-upscale' || !Number.isInteger(o.maxTiles) || o.maxTiles < 2)) {
    throw new UserError(`maxTiles (--max-tiles) is for SD upscale, at least 2 tiles (the first holds the upscale and session starts, the later ones give the median); got ${o.maxTiles}${o.mode === 'sd-upscale' ? '' : ` in ${o.mode} mode`}`);
  }
  const pipe = await StableDiffusion.load(o.model, { ...o, ...(o.taesd !== undefined && { taesd: o.taesd }) });
  const [width, height] = o.size;
  const picture = o.mode === 'sd-upscale' ? (o.initImage ?? syntheticPicture(width, height)) : undefined;
  const controlnet = o.controlnet === undefined ? undefined : await pipe.loadControlNet(o.controlnet);
  // Ultimate SD upscale's ControlNet tile: the unit's image is each tile's init image (the default).
  const control = controlnet && { controlnets: [{ model: controlnet, preprocessor: 'tile_resample' as const, ...(!picture && { image: syntheticPicture(width, height) }) }] };
  const request = (attention: AttentionOptions): GenerateOptions => {
    const common = { prompt: 'a mountain lake at dawn, detailed', steps: o.steps, sampler: o.sampler, cfg: o.cfg, seed: 1, attention, batchCondUncond: o.batchCondUncond, ...control, ...(o.taesd !== undefined && { vaeDecoder: 'taesd' as const }) };
    if (picture) return { ...common, initImage: picture, strength: o.strength, width: o.tile[0], height: o.tile[1], sdUpscale: { scale: o.scale, overlap: o.overlap, ...(o.upscaler && { upscaler: o.upscaler }) } };
    return { ...common, width, height, tiling: o.tiling };
  };
  // The attention a tile runs, ToDo's auto resolved at its size: for runs cut short by maxTiles (a finished run reports its own).
  const tileAttention = (attention: AttentionOptions): AttentionOptions => pipe.parts({ prompt: '', width: o.tile[0], height: o.tile[1], attention }).passes[0]!.info.attention;
  const generate = async (label: string, attention: AttentionOptions): Promise<Run> => {
    const stepMs: number[] = [];
    const tileDone: number[] = [];
    let tiles = 1;
    let last: { at: number; part: string } | undefined;
    const stop = new AbortController();
    const onStep = (s: StepInfo): void => {
      const now = performance.now();
      const part = `${s.tile?.index ?? 0}/${s.pass ?? 1}`;
      if (s.phase !== 'decode' && last?.part === part) stepMs.push(now - last.at);
      last = s.phase === 'decode' ? undefined : { at: now, part };
      if (s.phase === 'decode' && s.tile) {
        tileDone.push(now - t0);
        tiles = s.tile.count;
        if (o.maxTiles !== undefined && tileDone.length >= o.maxTiles && tileDone.length < tiles) stop.abort();
      }
    };
    resetPeak();
    const t0 = performance.now();
    let output: [number, number] = picture ? [Math.round(picture.width * o.scale), Math.round(picture.height * o.scale)] : [width, height];
    let parts = 1;
    let ran = picture ? tileAttention(attention) : attention;
    let stages: Pick<Run, 'denoiseStepMs' | 'decodeMs'> = {};
    try {
      const r = await pipe.generate(request(attention), { onStep, signal: stop.signal });
      output = [r.images[0]!.width, r.images[0]!.height];
      parts = r.settings.sdUpscale?.tiles ?? r.settings.passes[0]!.views ?? 1;
      ran = r.settings.passes[0]!.attention;
      const steps = r.settings.passes.reduce((a, p) => a + p.steps, 0) * (r.settings.sdUpscale?.tiles ?? 1);
      stages = { denoiseStepMs: r.timings.denoiseMs / steps, decodeMs: r.timings.decodeMs };
    } catch (e) {
      if (!(stop.signal.aborted && (e as Error).name === 'AbortError')) throw e;
      parts = tiles;
    }
    const tileMs = tileDone.slice(1).map((at, i) => at - tileDone[i]!);
    const ms = stop.signal.aborted ? tileDone[0]! + (tiles - 1) * median(tileMs) : performance.now() - t0;
    const run: Run = { ms, stepMs, tileMs, tilesRun: tileDone.length, ...stages, peakMiB: peakRssMiB(), output, parts, attention: ran };
    const what = stop.signal.aborted ? `${(ms / 1000).toFixed(1)} s extrapolated from ${tileDone.length} of ${tiles} tiles (a later tile ${(median(tileMs) / 1000).toFixed(1)} s)` : `${(ms / 1000).toFixed(1)} s`;
    log(`  ${label}: ${what} (step ${stepMs.length ? (median(stepMs) / 1000).toFixed(2) : '-'} s, peak ${(run.peakMiB / 1024).toFixed(1)} GiB)`);
    return run;
  };
  const records: TiledRecord[] = [];
  try {
    for (const m of o.methods.filter((x) => x.label !== 'dense')) {
      log(`${o.mode} ${width}x${height}${picture ? ` x${o.scale}` : ''}: dense vs ${m.label}, ${o.runs} runs each, interleaved`);
      const { dense: d, method: t } = await interleaved(o.runs, m, (spec) => generate(spec.label, spec.attention));
      const total = stats(t.map((r) => r.ms));
      const denseTotal = stats(d.map((r) => r.ms));
      const step = stats(t.flatMap((r) => r.stepMs));
      const denseStep = stats(d.flatMap((r) => r.stepMs));
      const tileMs = t.flatMap((r) => r.tileMs);
      const denseTileMs = d.flatMap((r) => r.tileMs);
      records.push({
        type: 'tiled',
        mode: o.mode,
        size: o.size,
        output: t[0]!.output,
        method: m.label,
        parts: t[0]!.parts,
        attention: t[0]!.attention,
        total,
        denseInterleaved: denseTotal,
        speedup: denseTotal.medianMs / total.medianMs,
        step,
        denseStep,
        stepSpeedup: denseStep.medianMs / step.medianMs,
        peakMiB: Math.max(...t.map((r) => r.peakMiB)),
        densePeakMiB: Math.max(...d.map((r) => r.peakMiB)),
        ...(picture && { upscaler: typeof o.upscaler === 'string' ? o.upscaler : (o.upscaler?.name ?? 'lanczos') }),
        ...(o.controlnet !== undefined && { controlnet: `${o.controlnet} (tile_resample)` }),
        ...(o.taesd !== undefined && { decoder: 'taesd' as const }),
        ...(t[0]!.tilesRun < t[0]!.parts && { tilesRun: t[0]!.tilesRun }),
        ...(tileMs.length && denseTileMs.length && { tile: stats(tileMs), denseTile: stats(denseTileMs) }),
        ...stageStats(d, t),
      });
    }
  } finally {
    await controlnet?.dispose();
    await pipe.dispose();
  }
  return records;
}

/** Denoising per step and decode of the runs that finished, where both sides have them. */
function stageStats(dense: readonly Run[], method: readonly Run[]): Pick<TiledRecord, 'denoiseStep' | 'denseDenoiseStep' | 'decode' | 'denseDecode'> {
  const of = (runs: readonly Run[], k: 'denoiseStepMs' | 'decodeMs'): number[] => runs.flatMap((r) => (r[k] === undefined ? [] : [r[k]]));
  if (!of(dense, 'denoiseStepMs').length || !of(method, 'denoiseStepMs').length) return {};
  return { denoiseStep: stats(of(method, 'denoiseStepMs')), denseDenoiseStep: stats(of(dense, 'denoiseStepMs')), decode: stats(of(method, 'decodeMs')), denseDecode: stats(of(dense, 'decodeMs')) };
}

const sec = (ms: number): string => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);
const range = (st: Stats): string => `${sec(st.medianMs)} (${sec(st.minMs)}–${sec(st.maxMs)}, n=${st.runsMs.length})`;
const gib = (mib: number): string => (mib / 1024).toFixed(1);

/** One row per method: whole-generation and step times against the interleaved dense runs, and peak memory. */
export function tiledTable(records: readonly TiledRecord[]): string {
  const attn = (a: AttentionOptions): string => (a.method === 'todo' ? `ToDo ${a.factor}` : a.method === 'tome' ? `ToMe ${a.ratio}` : 'dense');
  const rows = records.map((r) => [
    r.mode,
    `${r.size.join('x')} → ${r.output.join('x')}`,
    `${r.method} (${attn(r.attention)})`,
    `${r.parts} ${r.mode === 'multidiffusion' ? 'views/step' : 'tiles'}${r.tilesRun ? ` (${r.tilesRun} run, the rest extrapolated)` : ''}`,
    range(r.denseInterleaved),
    range(r.total),
    `**${r.speedup.toFixed(2)}x**`,
    r.step.runsMs.length && r.denseStep.runsMs.length ? `${sec(r.denseStep.medianMs)} / ${sec(r.step.medianMs)}` : '–',
    r.step.runsMs.length && r.denseStep.runsMs.length ? `${r.stepSpeedup.toFixed(2)}x` : '–',
    r.tile && r.denseTile ? `${sec(r.denseTile.medianMs)} / ${sec(r.tile.medianMs)}` : '–',
    r.denoiseStep && r.denseDenoiseStep ? `${sec(r.denseDenoiseStep.medianMs)} / ${sec(r.denoiseStep.medianMs)} (${(r.denseDenoiseStep.medianMs / r.denoiseStep.medianMs).toFixed(2)}x)` : '–',
    r.decode && r.denseDecode ? `${sec(r.denseDecode.medianMs)} / ${sec(r.decode.medianMs)}` : '–',
    `${gib(r.densePeakMiB)} / ${gib(r.peakMiB)}`,
  ]);
  const head = ['mode', 'size → output', 'method (as run)', 'parts', 'dense s, median (min–max)', 'method s', 'speed-up', 'step s, dense / method', 'step speed-up', 'later tile s, dense / method', 'denoise s per step, dense / method', 'decode s, dense / method', 'peak GiB, dense / method'];
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}
