/**
 * Whole generations as users feel them: text encoding, every U-Net step and the VAE decode, the
 * model loaded once. The methods take turns in rounds (the order reversed every other round) so
 * the machine's drift spreads over all of them; every number is a median. Each timed generation
 * follows an untimed one of the same method, so the sessions its graphs need are open (a U-Net
 * keeps the last session per graph kind) and session starts stay out of the times. Every image
 * is compared with the dense image of the same seed (MSE, and HPF, the ToDo paper's sharpness).
 */
import type { RgbImage } from '../io/png.js';
import { StableDiffusion, type GenerateOptions, type GenerateResult, type PassInfo } from '../pipeline/stable-diffusion.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { SamplerName } from '../scheduler/index.js';
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

export interface ImageBenchOptions extends RuntimeOptions {
  model: string;
  size: [number, number];
  steps: number;
  sampler?: SamplerName;
  cfg: number;
  seed: number;
  prompt: string;
  /** Methods; dense is added first when missing (the fidelity baseline). */
  methods: ImageMethod[];
  /** Timed generations per method. */
  runs: number;
  /** A TAESD beside the model's VAE, for methods with `+taesd`. */
  taesd?: string;
  onLog?: (m: string) => void;
}

export interface ImageRecord {
  type: 'image';
  size: [number, number];
  method: string;
  /** What each pass ran: steps, attention, DeepCache, U-Net evaluations (whole, shallow, prompt-only). */
  passes: PassInfo[];
  total: Stats;
  /** The generation's stages: text encoding, denoising, VAE decode. */
  textMs: number;
  denoiseMs: number;
  decodeMs: number;
  /** median(dense) / median(method). */
  speedup: number;
  /** Against the dense image of the same seed, on [0, 1]. */
  mse: number;
  hpf: number;
  denseHpf: number;
}

export async function runImageBench(o: ImageBenchOptions): Promise<{ records: ImageRecord[]; sampler: SamplerName }> {
  const log = o.onLog ?? (() => {});
  const methods = o.methods.some((m) => m.label === 'dense') ? o.methods : [parseImageMethod('dense'), ...o.methods];
  if (!o.taesd && methods.some((m) => m.options.vaeDecoder === 'taesd')) throw new Error('methods with +taesd decode with a TAESD: give one with --taesd FILE|DIR');
  const pipe = await StableDiffusion.load(o.model, o);
  const sampler = o.sampler ?? pipe.defaultSampler;
  const [width, height] = o.size;
  const generate = (m: ImageMethod): Promise<GenerateResult> =>
    pipe.generate({ prompt: o.prompt, width, height, steps: o.steps, sampler, cfg: o.cfg, seed: o.seed, vaeTiling: false, ...m.options });
  const runs = new Map<string, GenerateResult[]>(methods.map((m) => [m.label, []]));
  const times = new Map<string, number[]>(methods.map((m) => [m.label, []]));
  try {
    for (let round = 0; round < o.runs; round++) {
      for (const m of round % 2 === 0 ? methods : [...methods].reverse()) {
        await generate(m);
        const t0 = performance.now();
        const r = await generate(m);
        const ms = performance.now() - t0;
        log(`  ${m.label}: ${(ms / 1000).toFixed(2)} s`);
        runs.get(m.label)!.push(r);
        times.get(m.label)!.push(ms);
      }
    }
  } finally {
    await pipe.dispose();
  }
  const image = (label: string): RgbImage => runs.get(label)![0]!.images[0]!;
  const dense = image('dense');
  const denseMs = stats(times.get('dense')!).medianMs;
  const records = methods.map((m): ImageRecord => {
    const rs = runs.get(m.label)!;
    const total = stats(times.get(m.label)!);
    const stage = (k: keyof GenerateResult['timings']): number => stats(rs.map((r) => r.timings[k])).medianMs;
    return {
      type: 'image',
      size: o.size,
      method: m.label,
      passes: rs[0]!.settings.passes,
      total,
      textMs: stage('textMs'),
      denoiseMs: stage('denoiseMs'),
      decodeMs: stage('decodeMs'),
      speedup: denseMs / total.medianMs,
      mse: mse(image(m.label), dense),
      hpf: hpf(image(m.label)),
      denseHpf: hpf(dense),
    };
  });
  return { records, sampler };
}

const sec = (ms: number): string => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);

/** One row per method: whole-generation time and speed-up against dense, its stages, U-Net evaluations and fidelity. */
export function imageTable(records: readonly ImageRecord[]): string {
  const evaluations = (p: PassInfo): string => `${p.evaluations.full} / ${p.evaluations.shallow} / ${p.evaluations.promptOnly}`;
  const rows = records.map((r) => [
    r.method,
    r.passes.map(evaluations).join(' + '),
    `${sec(r.total.medianMs)} (${sec(r.total.minMs)}–${sec(r.total.maxMs)}, n=${r.total.runsMs.length})`,
    r.method === 'dense' ? '1.00x' : `**${r.speedup.toFixed(2)}x**`,
    `${sec(r.textMs)} / ${sec(r.denoiseMs)} / ${sec(r.decodeMs)}`,
    r.mse.toExponential(2),
    `${r.hpf.toFixed(2)} (${r.denseHpf.toFixed(2)})`,
  ]);
  const head = ['method', 'U-Net runs: whole / shallow / prompt-only', 's, median (min–max)', 'speed-up', 'text / denoise / decode s', 'MSE vs dense', 'HPF (dense)'];
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}
