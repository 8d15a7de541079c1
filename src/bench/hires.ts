/**
 * The hires fix as users feel it: whole generations (text encoding, both passes, the upscale,
 * the VAE decode, and the U-Net session switches between the two sizes) with dense attention
 * and with each method in the second pass, interleaved (dense, method, method, dense, …) so the
 * machine's drift cancels out of the ratio of medians. The second pass's step time is reported
 * too (steps after its first, which holds the session start).
 */
import type { AttentionOptions } from '../attention/options.js';
import type { HiresUpscaler } from '../pipeline/hires.js';
import { StableDiffusion, type PassInfo } from '../pipeline/stable-diffusion.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { SamplerName } from '../scheduler/index.js';
import { median } from './machine.js';
import { attentionLabel } from './report.js';
import { interleaved, stats, type MethodSpec, type Stats } from './speed.js';

export interface HiresBenchOptions extends RuntimeOptions {
  model: string;
  size: [number, number];
  scale: number;
  steps: number;
  hiresSteps: number;
  denoise: number;
  upscaler: HiresUpscaler;
  sampler: SamplerName;
  cfg: number;
  /** Second-pass attention methods compared with dense (dense itself is added). */
  methods: MethodSpec[];
  /** Timed generations per method. */
  runs: number;
  onLog?: (m: string) => void;
}

export interface HiresRecord {
  type: 'hires';
  size: [number, number];
  target: [number, number];
  method: string;
  /** What each pass ran (steps after the strength cut, attention as used). */
  passes: PassInfo[];
  total: Stats;
  /** Dense generations interleaved with this method's. */
  denseInterleaved: Stats;
  /** median(dense) / median(method), whole generations. */
  speedup: number;
  secondPassStep: Stats;
  denseSecondPassStep: Stats;
  secondPassStepSpeedup: number;
}

interface Run {
  ms: number;
  /** Second-pass step times after its first step. */
  stepMs: number[];
  passes: PassInfo[];
}

export async function runHiresBench(o: HiresBenchOptions): Promise<HiresRecord[]> {
  const log = o.onLog ?? (() => {});
  const pipe = await StableDiffusion.load(o.model, o);
  const [width, height] = o.size;
  const generate = async (label: string, attention: AttentionOptions): Promise<Run> => {
    const stamps: number[] = [];
    const t0 = performance.now();
    const r = await pipe.generate(
      { prompt: 'a lighthouse on a cliff at dusk, detailed', width, height, steps: o.steps, sampler: o.sampler, cfg: o.cfg, seed: 1, attention: { method: 'dense' }, hires: { scale: o.scale, steps: o.hiresSteps, denoise: o.denoise, upscaler: o.upscaler, attention } },
      { onStep: (s) => void (s.phase === 'hires' && stamps.push(performance.now())) },
    );
    const ms = performance.now() - t0;
    const stepMs = stamps.slice(1).map((t, i) => t - stamps[i]!);
    log(`  ${label}: ${(ms / 1000).toFixed(1)} s (second-pass step ${stepMs.length ? (median(stepMs) / 1000).toFixed(2) : '-'} s)`);
    return { ms, stepMs, passes: r.settings.passes };
  };
  const records: HiresRecord[] = [];
  try {
    for (const m of o.methods.filter((x) => x.label !== 'dense')) {
      log(`hires ${width}x${height} → x${o.scale}: dense vs ${m.label}, ${o.runs} runs each, interleaved`);
      const { dense: d, method: t } = await interleaved(o.runs, m, (spec) => generate(spec.label, spec.attention));
      const total = stats(t.map((r) => r.ms));
      const denseTotal = stats(d.map((r) => r.ms));
      const step = stats(t.flatMap((r) => r.stepMs));
      const denseStep = stats(d.flatMap((r) => r.stepMs));
      const target = t[0]!.passes[1]!;
      records.push({
        type: 'hires',
        size: o.size,
        target: [target.width, target.height],
        method: m.label,
        passes: t[0]!.passes,
        total,
        denseInterleaved: denseTotal,
        speedup: denseTotal.medianMs / total.medianMs,
        secondPassStep: step,
        denseSecondPassStep: denseStep,
        secondPassStepSpeedup: denseStep.medianMs / step.medianMs,
      });
    }
  } finally {
    await pipe.dispose();
  }
  return records;
}

const sec = (ms: number): string => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);
const range = (st: Stats): string => `${sec(st.medianMs)} (${sec(st.minMs)}–${sec(st.maxMs)}, n=${st.runsMs.length})`;
/** A second pass of one step has no step after its first: nothing to time. */
const stepCell = (r: HiresRecord): [string, string] =>
  r.secondPassStep.runsMs.length && r.denseSecondPassStep.runsMs.length
    ? [`${sec(r.denseSecondPassStep.medianMs)} / ${sec(r.secondPassStep.medianMs)}`, `${r.secondPassStepSpeedup.toFixed(2)}x`]
    : ['–', '–'];

/** One row per method: whole-generation and second-pass step times, each against the interleaved dense runs. */
export function hiresTable(records: readonly HiresRecord[]): string {
  const rows = records.map((r) => [
    `${r.size.join('x')} → ${r.target.join('x')}`,
    r.method,
    r.passes.map((p) => `${p.steps} (${attentionLabel(p.attention)})`).join(' + '),
    range(r.denseInterleaved),
    range(r.total),
    `**${r.speedup.toFixed(2)}x**`,
    ...stepCell(r),
  ]);
  const head = ['hires fix', 'second pass', 'steps run per pass (attention)', 'dense s, median (min–max)', 'method s', 'speed-up', '2nd-pass step s, dense / method', 'step speed-up'];
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}
