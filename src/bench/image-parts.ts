/**
 * A generation's pieces run and timed one by one (StableDiffusion.parts): the text encoding,
 * each distinct U-Net evaluation of each pass (whole, DeepCache's whole with its feature and
 * shallow, NGMS's prompt-only half, per size and attention) through the pass's own noise
 * predictor, and the VAE decode. Session starts inside a measurement (the component runtimes
 * count them) are taken out of its time and kept apart. The image bench warms up with one round
 * of this and composes whole generations from it where whole runs take too long.
 */
import { sessionStarts, type SessionStarts } from '../models/component.js';
import type { Conditioning } from '../pipeline/conditioning-sdxl.js';
import { classifierFreeGuidance } from '../pipeline/guidance-embedding.js';
import type { NoisePredictor } from '../pipeline/noise-predictor.js';
import type { GenerationParts, PassPart, PlannedEvaluation, StableDiffusion } from '../pipeline/stable-diffusion.js';
import type { Tensor } from '../tensor.js';
import type { ImageMethod } from './image.js';
import { attentionLabel } from './report.js';
import { deterministic } from './speed.js';

export interface SessionStartsDelta extends SessionStarts {
  /** The U-Net's alone. */
  unet: SessionStarts;
}

function startTotals(): SessionStartsDelta {
  const all = Object.entries(sessionStarts());
  const sum = (xs: [string, SessionStarts][]): SessionStarts => ({ count: xs.reduce((a, [, s]) => a + s.count, 0), ms: xs.reduce((a, [, s]) => a + s.ms, 0) });
  return { ...sum(all), unet: sum(all.filter(([name]) => name === 'unet')) };
}

/** Runs `run`, returning its value, its wall time and the session starts inside it. */
export async function measured<T>(run: () => Promise<T>): Promise<{ value: T; ms: number; starts: SessionStartsDelta }> {
  const before = startTotals();
  const t0 = performance.now();
  const value = await run();
  const ms = performance.now() - t0;
  const after = startTotals();
  return { value, ms, starts: { count: after.count - before.count, ms: after.ms - before.ms, unet: { count: after.unet.count - before.unet.count, ms: after.unet.ms - before.unet.ms } } };
}

export type PartStage = 'text' | 'unet' | 'decode';

/** A distinct piece of work and its measurements. */
export interface PartSamples {
  label: string;
  stage: PartStage;
  /** U-Net pieces: the batch the U-Net ran. */
  batch?: number;
  /** Each measurement's time, session starts taken out. */
  ms: number[];
  /** The session starts seen in a measurement (the piece's graph opening its session), where there were any. */
  sessionMs: number[];
}

/** A method's generation in pieces. */
export interface MethodParts {
  method: ImageMethod;
  /** What is counted: the generation as generate runs it. */
  parts: GenerationParts;
  /** What is timed, when not the same: its unguided twin (each guided evaluation timed at batch 1, counted twice). */
  timed?: GenerationParts;
}

interface Part {
  key: string;
  label: string;
  stage: PartStage;
  batch?: number;
}

/** The U-Net piece an evaluation runs: its graph (size, batch, attention, DeepCache's role), which decides its time. */
export function unetPart(pass: PassPart, e: PlannedEvaluation, guided: boolean): Part {
  const { width, height, attention, deepcache: dc } = pass.info;
  const batch = pass.latentDims[0]! * (guided && !e.promptOnly ? 2 : 1);
  const graph = !dc ? 'whole' : `${e.shallow ? 'shallow' : 'whole + feature'} (DeepCache layer ${dc.layer}, block ${dc.block})`;
  const calls = e.split ? ` (two calls of ${batch / 2})` : '';
  const label = `U-Net ${width}x${height}, batch ${batch}${calls}, ${attentionLabel(attention)}${e.attentionActive ? '' : ' off'}, ${graph}`;
  return { key: JSON.stringify({ width, height, batch, split: e.split, attention, active: e.attentionActive, graph }), label, stage: 'unet', batch };
}

export function textPart(parts: GenerationParts): Part {
  const sizes = parts.passes.map((p) => `${p.info.width}x${p.info.height}`).join(' + ');
  return { key: `text ${sizes}`, label: `text encoder (${sizes})`, stage: 'text' };
}

export function decodePart(parts: GenerationParts): Part {
  const { width, height } = parts.passes.at(-1)!.info;
  const label = `${parts.settings.vaeDecoder === 'taesd' ? 'TAESD' : 'VAE'} decode ${width}x${height}`;
  return { key: label, label, stage: 'decode' };
}

const latents = (dims: readonly number[]): Tensor => ({ data: deterministic(dims.reduce((a, b) => a * b, 1), 1), dims });

/** Whether a generation's U-Net runs a negative half (classifier-free guidance). */
export function guided(pipe: StableDiffusion, parts: GenerationParts): boolean {
  return classifierFreeGuidance(parts.settings.cfg, pipe.unet.config);
}

/**
 * Runs every method's pieces `rounds` times, the methods taking turns (the order reversed every
 * other round). In a round a piece two methods share is run once, except a pass's first, whole
 * evaluation, which runs again wherever the pass's shallow evaluations still need its feature.
 */
export async function runParts(pipe: StableDiffusion, methods: readonly MethodParts[], o: { rounds: number; onLog?: (m: string) => void }): Promise<Map<string, PartSamples>> {
  const log = o.onLog ?? (() => {});
  const samples = new Map<string, PartSamples>();
  const conditioning = new Map<MethodParts, Conditioning[]>();
  const measure = async <T>(part: Part, round: number, run: () => Promise<T>): Promise<T> => {
    const m = await measured(run);
    const s = samples.get(part.key) ?? { label: part.label, stage: part.stage, ...(part.batch && { batch: part.batch }), ms: [], sessionMs: [] };
    s.ms.push(m.ms - m.starts.ms);
    if (m.starts.count > 0) s.sessionMs.push(m.starts.ms);
    samples.set(part.key, s);
    log(`  [${round + 1}/${o.rounds}] ${part.label}: ${((m.ms - m.starts.ms) / 1000).toFixed(2)} s${m.starts.count ? ` (+ ${(m.starts.ms / 1000).toFixed(2)} s session start)` : ''}`);
    return m.value;
  };
  for (let round = 0; round < o.rounds; round++) {
    const seen = new Set<string>();
    for (const m of round % 2 === 0 ? methods : [...methods].reverse()) {
      const text = textPart(m.parts);
      if (!seen.has(text.key)) {
        seen.add(text.key);
        const c = await measure(text, round, () => m.parts.encode());
        if (!m.timed) conditioning.set(m, c);
      }
      const timed = m.timed ?? m.parts;
      if (!conditioning.has(m)) conditioning.set(m, await timed.encode());
      const cfg = guided(pipe, timed);
      for (const [p, pass] of timed.passes.entries()) {
        const distinct = new Map<string, { call: number; e: PlannedEvaluation; part: Part }>();
        for (const [call, e] of pass.evaluations.entries()) {
          const part = unetPart(pass, e, cfg);
          if (!distinct.has(part.key)) distinct.set(part.key, { call, e, part });
        }
        const missing = [...distinct.values()].filter((d) => !seen.has(d.part.key));
        const needFeature = missing.some((d) => d.e.shallow);
        const run = [...distinct.values()].filter((d) => !seen.has(d.part.key) || (needFeature && d.call === 0));
        if (run.length === 0) continue;
        let predictor: NoisePredictor | undefined;
        for (const d of run) {
          predictor ??= await pass.predictor();
          const x = latents(pass.latentDims);
          const c = conditioning.get(m)![p]!;
          await measure(d.part, round, () => predictor!.predict(d.call, x, d.e.timestep, c, d.e.attentionActive));
          seen.add(d.part.key);
        }
      }
      const decode = decodePart(m.parts);
      if (!seen.has(decode.key)) {
        seen.add(decode.key);
        const z = latents(m.parts.passes.at(-1)!.latentDims);
        await measure(decode, round, () => m.parts.decode(z));
      }
    }
  }
  return samples;
}
