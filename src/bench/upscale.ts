/**
 * The upscaler model's pass alone (`Upscaler.forward` on a float image: no PNG coding, no
 * Lanczos): the first run, which builds the graph and starts the session, apart from the timed
 * runs after it, with the tile plan and the output megapixels per second.
 */
import { planAxis } from '../models/upscaler/tiling.js';
import { loadUpscaler } from '../models/upscaler/upscaler.js';
import { rng } from '../models/random-model.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { stats, type Stats } from './speed.js';

export interface UpscaleBenchOptions extends RuntimeOptions {
  model: string;
  /** Input width and height. */
  size: [number, number];
  tile: number;
  overlap: number;
  runs: number;
  onLog?: (m: string) => void;
}

export interface UpscaleRecord {
  type: 'upscale';
  model: string;
  architecture: string;
  scale: number;
  input: [number, number];
  output: [number, number];
  tile: number;
  overlap: number;
  tiles: number;
  /** The first run: graph build (or cache read), session start and one pass. */
  firstMs: number;
  runs: Stats;
  /** Output megapixels per second at the median. */
  megapixelsPerSecond: number;
}

export async function runUpscaleBench(o: UpscaleBenchOptions): Promise<UpscaleRecord> {
  const log = o.onLog ?? (() => {});
  const up = await loadUpscaler(o.model, o);
  try {
    const [w, h] = o.size;
    const next = rng(1);
    const x = { data: Float32Array.from({ length: 3 * w * h }, () => next()), dims: [1, 3, h, w] };
    const m = up.config.architecture === 'ESRGAN' ? up.config.unshuffle : 1;
    const tiles = planAxis(Math.ceil(h / m) * m, o, m).starts.length * planAxis(Math.ceil(w / m) * m, o, m).starts.length;
    const tileOpts = { tile: o.tile, overlap: o.overlap };
    log(`${up.name} (${up.config.architecture} x${up.scale}): ${w}x${h} → ${w * up.scale}x${h * up.scale} in ${tiles} tile(s); first run`);
    let t = performance.now();
    await up.forward(x, tileOpts);
    const firstMs = performance.now() - t;
    const runs: number[] = [];
    for (let i = 0; i < o.runs; i++) {
      t = performance.now();
      await up.forward(x, tileOpts);
      runs.push(performance.now() - t);
      log(`  run ${i + 1}/${o.runs}: ${(runs[i]! / 1000).toFixed(2)} s`);
    }
    const s = stats(runs);
    const out: [number, number] = [w * up.scale, h * up.scale];
    return { type: 'upscale', model: o.model, architecture: up.config.architecture, scale: up.scale, input: [w, h], output: out, ...tileOpts, tiles, firstMs, runs: s, megapixelsPerSecond: (out[0] * out[1]) / 1e6 / (s.medianMs / 1000) };
  } finally {
    await up.dispose();
  }
}

export function upscaleTable(r: UpscaleRecord): string {
  const head = ['model', 'input → output', 'tiles (tile / overlap)', 'first run s', 'pass s, median (min–max)', 'output MP/s'];
  const row = [
    `${r.architecture} x${r.scale}`,
    `${r.input.join('x')} → ${r.output.join('x')}`,
    `${r.tiles} (${r.tile || 'none'} / ${r.overlap})`,
    (r.firstMs / 1000).toFixed(2),
    `${(r.runs.medianMs / 1000).toFixed(2)} (${(r.runs.minMs / 1000).toFixed(2)}–${(r.runs.maxMs / 1000).toFixed(2)})`,
    r.megapixelsPerSecond.toFixed(2),
  ];
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, `| ${row.join(' | ')} |`].join('\n');
}
