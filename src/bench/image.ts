/**
 * Whole generations as users feel them: text encoding, every U-Net step of each pass (a hires
 * fix's two), the VAE decode, the model loaded once. The methods take turns in rounds (the order
 * reversed every other round) so the machine's drift spreads over all of them; every number is a
 * median. Before the rounds each method's graphs are built and cached by one warm-up of its
 * pieces (image-parts.ts). The methods' turns open each method's sessions again, which a user
 * repeating one setting does not pay (one size, or a hires fix whose sizes' sessions fit in
 * memory together): the session starts are measured and reported apart, and the repeated time
 * leaves them out where they would stay open. Every image is compared with the dense image of the same seed (MSE, and
 * HPF, the ToDo paper's sharpness).
 */
import type { RgbImage } from '../io/png.js';
import type { HiresUpscaler } from '../pipeline/hires.js';
import { StableDiffusion, type GenerateOptions, type GenerateResult, type PassInfo } from '../pipeline/stable-diffusion.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { SamplerName } from '../scheduler/index.js';
import { measured, runParts, type SessionStartsDelta } from './image-parts.js';
import { hpf, mse } from './metrics.js';
import { parseMethod, stats, type Stats } from './speed.js';

/** What a method changes in a generation. */
export type MethodOptions = Pick<GenerateOptions, 'attention' | 'deepcache' | 'sMinUncond' | 'sMinUncondAll' | 'vaeDecoder'>;

export interface ImageMethod {
  label: string;
  options: MethodOptions;
}

interface MethodPart {
  pattern: RegExp;
  /** How the part is written, for errors. */
  form: string;
  apply(m: RegExpExecArray, o: MethodOptions): void;
}

/**
 * The parts a method joins with '+' besides its attention method (bench speed's names: dense,
 * todo-2, todo-auto, tome-0.5, …). A new kind of part is one more entry.
 */
const PARTS: readonly MethodPart[] = [
  {
    pattern: /^deepcache-(\d+)(?:-(\d+)-(\d+))?$/,
    form: 'deepcache-N or deepcache-N-layer-block',
    apply: (m, o) => void (o.deepcache = { interval: Number(m[1]), layer: Number(m[2] ?? 0), block: Number(m[3] ?? 0) }),
  },
  { pattern: /^ngms-(\d+(?:\.\d+)?)$/, form: 'ngms-SIGMA', apply: (m, o) => void (o.sMinUncond = Number(m[1])) },
  { pattern: /^taesd$/, form: 'taesd (decode with the bench\'s --taesd)', apply: (_m, o) => void (o.vaeDecoder = 'taesd') },
];

/** `dense`, `todo-auto+deepcache-3`, `todo-auto+deepcache-3+ngms-1`, … */
export function parseImageMethod(label: string): ImageMethod {
  const options: MethodOptions = {};
  for (const part of label.split('+')) {
    const known = PARTS.map((p) => ({ p, m: p.pattern.exec(part) })).find((x) => x.m);
    if (known) known.p.apply(known.m!, options);
    else {
      let spec;
      try {
        spec = parseMethod(part);
      } catch (e) {
        throw new Error(`method "${label}": "${part}" is neither ${PARTS.map((p) => p.form).join(' nor ')} nor an attention method: ${(e as Error).message}`);
      }
      if (options.attention) throw new Error(`method "${label}": two attention methods; join one with ${PARTS.map((p) => p.form).join(', ')}`);
      if (spec.attentionForm) throw new Error(`method "${label}": attention forms (@…) are exact and change no image; compare them with bench speed`);
      options.attention = spec.attention;
    }
  }
  return { label, options };
}

/** The methods with dense first (the baseline of speed-ups and fidelity), added when missing. */
export function withDense(methods: readonly ImageMethod[]): ImageMethod[] {
  const dense = methods.find((m) => m.label === 'dense') ?? parseImageMethod('dense');
  return [dense, ...methods.filter((m) => m !== dense)];
}

/** The upscalers whose hires fix the bench lays out in pieces (StableDiffusion.parts). */
export type ImageHiresUpscaler = Exclude<HiresUpscaler, 'lanczos'>;

/** A hires fix every method runs; each method's parts apply to both passes. */
export interface ImageHires {
  scale: number;
  steps: number;
  denoise: number;
  upscaler: ImageHiresUpscaler;
}

/** What every generation of an image bench shares. */
export interface ImageSetup {
  size: [number, number];
  steps: number;
  sampler?: SamplerName;
  karras?: boolean;
  cfg: number;
  seed: number;
  prompt: string;
  hires?: ImageHires;
}

/** A method's generation in the bench: its attention, DeepCache and NGMS in both passes of a hires fix (ToDo auto resolved per pass size). */
export function methodGeneration(setup: ImageSetup, m: ImageMethod): GenerateOptions {
  const [width, height] = setup.size;
  return { prompt: setup.prompt, width, height, steps: setup.steps, sampler: setup.sampler, karras: setup.karras, cfg: setup.cfg, seed: setup.seed, ...(setup.hires && { hires: { ...setup.hires } }), ...m.options };
}

export interface ImageBenchOptions extends RuntimeOptions, ImageSetup {
  model: string;
  /** Methods; dense is added first when missing. */
  methods: ImageMethod[];
  /** Timed generations per method. */
  runs: number;
  /** Run each method's pieces once before the rounds (graphs built and cached); default true. */
  warmup?: boolean;
  /** A TAESD beside the model's VAE, for methods with `+taesd`. */
  taesd?: string;
  onLog?: (m: string) => void;
}

export interface ImageRecord {
  type: 'image';
  size: [number, number];
  method: string;
  /** What each pass ran: size, steps, attention as used, DeepCache, U-Net evaluations (whole, shallow, prompt-only). */
  passes: PassInfo[];
  total: Stats;
  /** The generation's stages (medians): text encoding; denoising (every pass, the hires upscale and second text encoding, session starts); VAE decode. */
  textMs: number;
  denoiseMs: number;
  decodeMs: number;
  /** Denoising less the U-Net's session starts, per image. */
  unetMs: number;
  /** Session starts inside a generation (medians): every component's, and the U-Net's alone. */
  sessionStarts: { count: number; ms: number; unetCount: number; unetMs: number };
  /** median(dense) / median(method). */
  speedup: number;
  /**
   * The generation as a user repeating it sees it: less its session starts where its sessions
   * stay open (one size; a hires fix whose sizes' sessions fit together), else the whole time.
   * The methods' turns here open each method's sessions again, which a user does not.
   */
  repeated: Stats;
  /** median(dense repeated) / median(method repeated). */
  repeatedSpeedup: number;
  /** Against the dense image of the same seed, on [0, 1] (of the timed model: random weights say little). */
  mse: number;
  hpf: number;
  denseHpf: number;
}

interface Run {
  ms: number;
  result: GenerateResult;
  starts: SessionStartsDelta;
}

/** Throws before any work when a method decodes with a TAESD and none is given. */
export function checkTaesd(methods: readonly ImageMethod[], taesd: string | undefined, flag: string): void {
  const m = methods.find((x) => x.options.vaeDecoder === 'taesd');
  if (m && !taesd) throw new Error(`method "${m.label}" decodes with a TAESD: give one with ${flag} FILE|DIR`);
}

export async function runImageBench(o: ImageBenchOptions): Promise<{ records: ImageRecord[]; sampler: SamplerName; karras: boolean }> {
  const log = o.onLog ?? (() => {});
  const methods = withDense(o.methods);
  checkTaesd(methods, o.taesd, '--taesd');
  const pipe = await StableDiffusion.load(o.model, o);
  const runs = new Map<string, Run[]>(methods.map((m) => [m.label, []]));
  const generations = methods.map((m) => methodGeneration(o, m));
  let sampler: SamplerName;
  let karras: boolean;
  let keepsSessions = false;
  try {
    ({ sampler, karras } = pipe.parts(generations[0]!).settings);
    keepsSessions = pipe.hiresKeepsSessions();
    if (o.warmup !== false) {
      log('warm-up: each method\'s text encoding, U-Net evaluations and decode, once');
      await runParts(pipe, methods.map((m, i) => ({ method: m, parts: pipe.parts(generations[i]!) })), { rounds: 1, onLog: log });
    }
    for (let round = 0; round < o.runs; round++) {
      for (const i of round % 2 === 0 ? methods.keys() : [...methods.keys()].reverse()) {
        const m = methods[i]!;
        const r = await measured(() => pipe.generate(generations[i]!));
        log(`  ${m.label}: ${(r.ms / 1000).toFixed(2)} s (session starts ${(r.starts.ms / 1000).toFixed(2)} s, ${r.starts.count})`);
        runs.get(m.label)!.push({ ms: r.ms, result: r.value, starts: r.starts });
      }
    }
  } finally {
    await pipe.dispose();
  }
  const image = (label: string): RgbImage => runs.get(label)![0]!.result.images[0]!;
  const dense = image('dense');
  const denseMs = stats(runs.get('dense')!.map((r) => r.ms)).medianMs;
  const kept = !o.hires || keepsSessions;
  const repeatedMs = (r: Run): number => (kept ? r.ms - r.starts.ms : r.ms);
  const denseRepeatedMs = stats(runs.get('dense')!.map(repeatedMs)).medianMs;
  const records = methods.map((m): ImageRecord => {
    const rs = runs.get(m.label)!;
    const total = stats(rs.map((r) => r.ms));
    const med = (f: (r: Run) => number): number => stats(rs.map(f)).medianMs;
    return {
      type: 'image',
      size: o.size,
      method: m.label,
      passes: rs[0]!.result.settings.passes,
      total,
      textMs: med((r) => r.result.timings.textMs),
      denoiseMs: med((r) => r.result.timings.denoiseMs),
      decodeMs: med((r) => r.result.timings.decodeMs),
      unetMs: med((r) => (r.result.timings.denoiseMs - r.starts.unet.ms) / r.result.images.length),
      sessionStarts: { count: med((r) => r.starts.count), ms: med((r) => r.starts.ms), unetCount: med((r) => r.starts.unet.count), unetMs: med((r) => r.starts.unet.ms) },
      speedup: denseMs / total.medianMs,
      repeated: stats(rs.map(repeatedMs)),
      repeatedSpeedup: denseRepeatedMs / stats(rs.map(repeatedMs)).medianMs,
      mse: mse(image(m.label), dense),
      hpf: hpf(image(m.label)),
      denseHpf: hpf(dense),
    };
  });
  return { records, sampler, karras };
}
