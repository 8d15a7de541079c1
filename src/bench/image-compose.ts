/**
 * Whole generations composed from measured pieces, for sizes where whole runs take hours: each
 * distinct piece (text encoding, each distinct U-Net evaluation, the VAE decode) is timed `runs`
 * times, the methods taking turns (image-parts.ts), and a method's generation time is the sum of
 * the pieces' medians over the exact evaluation schedule its generation runs
 * (StableDiffusion.parts: DeepCache's whole and shallow steps, NGMS's prompt-only calls at the
 * sampler's sigmas, ToDo auto per pass size). Session starts are measured apart and added where
 * every generation pays them (a hires fix alternates sizes, and the U-Net keeps one session per
 * graph kind).
 */
import { StableDiffusion, type PassInfo } from '../pipeline/stable-diffusion.js';
import type { SamplerName } from '../scheduler/index.js';
import { checkTaesd, methodGeneration, withDense, type ImageBenchOptions } from './image.js';
import { decodePart, guided, runParts, textPart, unetPart, type MethodParts, type PartSamples, type PartStage } from './image-parts.js';
import { stats, type Stats } from './speed.js';

export interface ComposeBenchOptions extends Omit<ImageBenchOptions, 'warmup'> {
  /** Time each guided U-Net evaluation at batch 1 and count it twice (less memory; generate runs batch 2). */
  splitGuidance?: boolean;
}

/** One distinct piece of work and its measurements. */
export interface PartRecord {
  type: 'part';
  part: string;
  stage: PartStage;
  /** U-Net pieces: the batch the U-Net ran. */
  batch?: number;
  /** Session starts taken out. */
  time: Stats;
  /** Its graph's session start, from the measurements that opened one. */
  sessionStart?: Stats;
}

/** How many of a pass's U-Net evaluations run one piece, each counted `weight` times. */
export interface ScheduleEntry {
  pass: 1 | 2;
  part: string;
  count: number;
  /** 2: a guided evaluation timed at batch 1 (--split-guidance). */
  weight: number;
}

export interface ComposedRecord {
  type: 'composed';
  size: [number, number];
  method: string;
  /** What each pass runs: size, steps, attention as used, DeepCache, U-Net evaluations (whole, shallow, prompt-only). */
  passes: PassInfo[];
  schedule: ScheduleEntry[];
  textPart: string;
  decodePart: string;
  textMs: number;
  /** Σ count × weight × the piece's median over the schedule, per image. */
  unetMs: number;
  decodeMs: number;
  /** text + U-Net + decode: a generation whose sessions are open. */
  totalMs: number;
  /** The session starts of the method's U-Net graphs, once each (medians). */
  sessionStartsMs: number;
  /**
   * Whether each generation starts them again: its passes differ in size and the U-Net cannot
   * keep both sizes' sessions in memory (StableDiffusion.hiresKeepsSessions), so they are added
   * to every generation, an upper bound (a graph whose session outlives the other pass is
   * counted too).
   */
  sessionsEachGeneration: boolean;
  /** A generation as a user repeating it pays: the total, plus the session starts where every generation has them. */
  generationMs: number;
  /** Dense's generationMs / this one's. */
  speedup: number;
  splitGuidance: boolean;
}

const median = (s: PartSamples): number => stats(s.ms).medianMs;

function compose(pipe: StableDiffusion, m: MethodParts, samples: Map<string, PartSamples>): Omit<ComposedRecord, 'speedup'> {
  const sample = (key: string): PartSamples => samples.get(key) ?? fail(`no measurement of ${key}`);
  const timed = m.timed ?? m.parts;
  const cfg = guided(pipe, timed);
  const split = m.timed !== undefined && guided(pipe, m.parts);
  const entries = new Map<string, ScheduleEntry & { key: string }>();
  for (const [p, pass] of m.parts.passes.entries()) {
    const twin = timed.passes[p]!;
    for (const [i, e] of pass.evaluations.entries()) {
      const part = unetPart(twin, twin.evaluations[i]!, cfg);
      const weight = split && !e.promptOnly ? 2 : 1;
      const k = `${p}|${weight}|${part.key}`;
      const entry = entries.get(k) ?? { pass: pass.info.pass, part: part.label, count: 0, weight, key: part.key };
      entry.count++;
      entries.set(k, entry);
    }
  }
  const schedule = [...entries.values()];
  const unetMs = schedule.reduce((a, x) => a + x.count * x.weight * median(sample(x.key)), 0) / m.parts.settings.batch;
  const graphs = new Set(schedule.map((x) => x.key));
  const sessionStartsMs = [...graphs].reduce((a, k) => a + (sample(k).sessionMs.length ? stats(sample(k).sessionMs).medianMs : 0), 0);
  const text = textPart(m.parts);
  const decode = decodePart(m.parts);
  const textMs = median(sample(text.key));
  const decodeMs = median(sample(decode.key));
  const totalMs = textMs + unetMs + decodeMs;
  const sizes = new Set(m.parts.passes.map((p) => `${p.info.width}x${p.info.height}`));
  const sessionsEachGeneration = sizes.size > 1 && !pipe.hiresKeepsSessions();
  return {
    type: 'composed',
    size: [m.parts.settings.width, m.parts.settings.height],
    method: m.method.label,
    passes: m.parts.passes.map((p) => p.info),
    schedule: schedule.map(({ key: _key, ...x }) => x),
    textPart: text.label,
    decodePart: decode.label,
    textMs,
    unetMs,
    decodeMs,
    totalMs,
    sessionStartsMs,
    sessionsEachGeneration,
    generationMs: totalMs + (sessionsEachGeneration ? sessionStartsMs : 0),
    splitGuidance: split,
  };
}

function fail(msg: string): never {
  throw new Error(msg);
}

export async function runComposedBench(o: ComposeBenchOptions): Promise<{ parts: PartRecord[]; records: ComposedRecord[]; sampler: SamplerName; karras: boolean }> {
  const log = o.onLog ?? (() => {});
  const methods = withDense(o.methods);
  checkTaesd(methods, o.taesd, '--taesd');
  const pipe = await StableDiffusion.load(o.model, o);
  try {
    const plans: MethodParts[] = methods.map((method) => {
      const g = methodGeneration(o, method);
      return { method, parts: pipe.parts(g), ...(o.splitGuidance && { timed: pipe.parts({ ...g, cfg: 1 }) }) };
    });
    for (const p of plans) {
      log(`${p.method.label}: ${p.parts.passes.map((x) => `${x.info.width}x${x.info.height} ${x.info.evaluations.full} whole / ${x.info.evaluations.shallow} shallow / ${x.info.evaluations.promptOnly} prompt-only`).join(' + ')}`);
    }
    const samples = await runParts(pipe, plans, { rounds: o.runs, onLog: log });
    const parts = [...samples.values()].map(
      (s): PartRecord => ({ type: 'part', part: s.label, stage: s.stage, ...(s.batch && { batch: s.batch }), time: stats(s.ms), ...(s.sessionMs.length && { sessionStart: stats(s.sessionMs) }) }),
    );
    const composed = plans.map((p) => compose(pipe, p, samples));
    const dense = composed[0]!.generationMs;
    const { sampler, karras } = plans[0]!.parts.settings;
    return { parts, records: composed.map((r) => ({ ...r, speedup: dense / r.generationMs })), sampler, karras };
  } finally {
    await pipe.dispose();
  }
}
