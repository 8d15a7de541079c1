/**
 * AUTOMATIC1111's API vocabulary mapped onto todo-sd's: request bodies → JobSpec (pipeline
 * options under the contracts' names), results → A1111's response shapes (`images`,
 * `parameters`, `info` as a JSON string).
 */
import { randomInt } from 'node:crypto';
import { decodeBase64, flattenImage, maskImage } from '../image/decode.js';
import { decodeImage, type DecodedImage } from '../io/image.js';
import type { RgbImage } from '../io/png.js';
import type { HiresUpscaler } from '../pipeline/hires.js';
import { A1111_IMAGE_UPSCALERS } from '../pipeline/upscale-image.js';
import type { TimestepSpacing } from '../scheduler/config.js';
import { CONSISTENCY_SAMPLERS, KARRAS_SAMPLERS, type SamplerName } from '../scheduler/index.js';
import { a1111SamplerName, resolveSampler, spacingOfScheduleType } from '../scheduler/names.js';
import { onField, RequestError } from './errors.js';
import { LIMITS } from './limits.js';
import type { JobResult, JobSpec } from './jobs.js';
import { toWire } from './runner.js';
import { fitImage } from './resize-mode.js';
import { sdUpscaleRequest, tiledDiffusionCanvas, tiledDiffusionRequest, upscalerList } from './scripts.js';
import type { ServerSettings, SettingsPatch } from './settings.js';
import { speedJob } from './speed-methods.js';
import { a1111ControlUnits, controlNetArgs } from './controlnet-units.js';
import { parseParameters } from '../pipeline/parameters.js';

/** A1111's schedulers (noise schedules, A1111 1.10's modules/sd_schedulers.py) that todo-sd has. */
export const A1111_SCHEDULERS = [
  { name: 'automatic', label: 'Automatic', aliases: null, default_rho: -1, need_inner_model: false },
  { name: 'uniform', label: 'Uniform', aliases: ['normal'], default_rho: -1, need_inner_model: true },
  { name: 'karras', label: 'Karras', aliases: null, default_rho: 7, need_inner_model: false },
  { name: 'sgm_uniform', label: 'SGM Uniform', aliases: ['SGMUniform'], default_rho: -1, need_inner_model: true },
];

/** A1111's built-in hires upscalers; "None" resizes with Lanczos there too. */
const HIRES_UPSCALERS: Record<string, HiresUpscaler> = {
  Latent: 'latent',
  'Latent (nearest)': 'latent-nearest',
  Lanczos: 'lanczos',
  Nearest: 'nearest',
  None: 'lanczos',
};

export const LATENT_UPSCALE_MODES = ['Latent', 'Latent (nearest)'];

const INPAINTING_FILL = ['fill', 'original', 'latent-noise', 'latent-nothing'] as const;

/** The body after schema validation (defaults filled in). */
export type GenerationBody = Record<string, unknown> & {
  prompt: string;
  negative_prompt: string;
  seed: number;
  sampler_name: string | null;
  sampler_index: string | null;
  scheduler: string | null;
  eta: number | null;
  batch_size: number;
  n_iter: number;
  steps: number;
  cfg_scale: number;
  width: number;
  height: number;
  denoising_strength: number | null;
  override_settings: SettingsPatch | null;
  /** A1111's per-request NGMS sigma; null: the s_min_uncond setting. */
  s_min_uncond: number | null;
  send_images: boolean;
  save_images: boolean;
  enable_hr?: boolean | null;
  hr_scale?: number | null;
  hr_upscaler?: string | null;
  hr_second_pass_steps?: number | null;
  hr_resize_x?: number | null;
  hr_resize_y?: number | null;
  init_images?: string[];
  resize_mode?: number;
  mask?: string | null;
  mask_blur?: number | null;
  inpainting_fill?: number;
  inpainting_mask_invert?: number | boolean;
  script_name?: string | null;
  script_args?: unknown[] | null;
  alwayson_scripts?: Record<string, unknown> | null;
};

/**
 * A sampler by A1111 name (or ours) and A1111's scheduler field: Automatic keeps what the name
 * says (and the model's spacing), Karras asks for Karras sigmas, Uniform and SGM Uniform for a
 * timestep spacing (names.ts, SCHEDULE_TYPES).
 */
export function resolveA1111Sampler(name: string, scheduler: string | null): { sampler: SamplerName; karras: boolean; timestepSpacing?: TimestepSpacing; label: string } {
  let named: { sampler: SamplerName; karras?: boolean };
  try {
    named = resolveSampler(name);
  } catch (e) {
    throw new RequestError('sampler_name', (e as Error).message);
  }
  const sched = (scheduler ?? 'automatic').toLowerCase();
  const known = A1111_SCHEDULERS.find((s) => s.name === sched || s.label.toLowerCase() === sched || s.aliases?.some((a) => a.toLowerCase() === sched));
  if (!known) throw new RequestError('scheduler', `unknown scheduler "${scheduler}"; available: ${A1111_SCHEDULERS.map((s) => s.label).join(', ')}`);
  const karras = known.name === 'automatic' ? (named.karras ?? false) : known.name === 'karras';
  if (karras && !KARRAS_SAMPLERS.includes(named.sampler)) {
    throw new RequestError('scheduler', `the Karras schedule is not available for ${a1111SamplerName(named.sampler)}; use Automatic`);
  }
  const timestepSpacing = spacingOfScheduleType(known.label);
  if (timestepSpacing && CONSISTENCY_SAMPLERS.includes(named.sampler)) {
    throw new RequestError('scheduler', `${a1111SamplerName(named.sampler)} picks its steps from its own distillation schedule; use the Automatic scheduler`);
  }
  return { sampler: named.sampler, karras, ...(timestepSpacing && { timestepSpacing }), label: a1111SamplerName(named.sampler, karras) };
}

function tcdEta(eta: number): number {
  if (eta > 1) throw new RequestError('eta', `eta ${eta} is out of range for TCD: its gamma runs from 0 (deterministic) to 1 (fully stochastic); 0.3 is typical`);
  return eta;
}

/** A client's base64 picture (PNG, JPEG, WebP, … with or without a data-URL prefix); bad input is a RequestError on `field`. */
export function readClientImage(b64: string, field: string): Promise<DecodedImage> {
  return onField(field, () => decodeImage(decodeBase64(b64), { what: field, maxPixels: LIMITS.maxInputPixels }));
}

/**
 * A mask of another shape than both its image and the output is a mistake (A1111 would stretch
 * it): refused, with the sizes named. One of the same shape but another size is resized.
 */
function checkMaskShape(mask: RgbImage, image: RgbImage, width: number, height: number): void {
  const aspect = (w: number, h: number): number => w / h;
  const fits = (w: number, h: number): boolean => Math.abs(aspect(mask.width, mask.height) - aspect(w, h)) <= 0.01 * aspect(w, h);
  if (fits(image.width, image.height) || fits(width, height)) return;
  throw new RequestError(
    'mask',
    `the mask is ${mask.width}x${mask.height} but init_images.0 is ${image.width}x${image.height} and the output ${width}x${height}: paint the mask on the image, or give one of the image's shape`,
  );
}

/** A canvas size of a tiled request: multiples of 8, within the tiled limit. */
function checkCanvas(width: number, height: number, what: string): void {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(v) || v < 8 || v % 8 !== 0 || v > LIMITS.maxTiledSize) {
      throw new RequestError(name, `${what} gives a ${name} of ${v}; it must be a multiple of 8 from 8 to ${LIMITS.maxTiledSize}`);
    }
  }
}

/**
 * A1111 request → JobSpec, every check made before the job is queued. `upscalers`: the names of
 * the upscaler models the server has (hr_upscaler may name one); `controlNet` finds a ControlNet
 * model by the name a request gives (the extension's matching) and returns its registry name;
 * `speedMethods`: the ids of the speed methods on (none: a dense job).
 */
export async function toJob(
  kind: JobSpec['kind'],
  body: GenerationBody,
  settings: ServerSettings,
  upscalers: () => string[],
  controlNet: (name: string) => string,
): Promise<{ job: JobSpec; samplerLabel: string; speedMethods: string[] }> {
  const s = settings.merged(body.override_settings, 'override_settings.');
  const { sampler, karras, timestepSpacing, label } = resolveA1111Sampler(body.sampler_name ?? body.sampler_index ?? 'Euler', body.scheduler);
  const seed = body.seed === -1 ? randomInt(2 ** 32) : body.seed;
  const models = upscalers();
  // The scripts name upscalers (SD upscale by index) in /sdapi/v1/upscalers' list.
  const list = upscalerList(models);
  const tiled = tiledDiffusionRequest(body.alwayson_scripts, kind, list);
  if (kind === 'txt2img' && body.script_name) throw new RequestError('script_name', `script "${body.script_name}" is not offered for txt2img here (SD upscale is an img2img script)`);
  const upscale = kind === 'img2img' ? sdUpscaleRequest(body.script_name, body.script_args, list) : undefined;
  if (tiled && upscale) throw new RequestError('script_name', 'SD upscale and Tiled Diffusion are two ways to tile: use one');
  const { width, height } = tiled?.size ?? body;
  if (tiled?.size) checkCanvas(width, height, 'Tiled Diffusion\'s image size');
  if (!tiled && Math.max(width, height) > LIMITS.maxSize) {
    throw new RequestError(width > LIMITS.maxSize ? 'width' : 'height', `width and height are at most ${LIMITS.maxSize} without Tiled Diffusion (alwayson_scripts); got ${width}x${height}`, 'value_error.number.not_le');
  }
  // SD upscale redraws batch_size tiles per batch (it sets their seeds) and n_iter upscales.
  const count = upscale ? body.n_iter : body.batch_size * body.n_iter;
  const hires = kind === 'txt2img' && body.enable_hr === true;
  // A request's s_min_uncond (A1111's request field) stands before the setting.
  const speed = speedJob({ ...s, s_min_uncond: body.s_min_uncond ?? s.s_min_uncond }, settings.speedModel(s.sd_model_checkpoint), 'override_settings.', hires);
  const job: JobSpec = {
    kind,
    model: s.sd_model_checkpoint,
    prompt: body.prompt,
    negativePrompt: body.negative_prompt,
    width,
    height,
    steps: body.steps,
    cfg: body.cfg_scale,
    sampler,
    karras,
    ...(timestepSpacing && { timestepSpacing }),
    // A1111 sends eta for every sampler (its ancestral / DDIM noise); here only TCD's γ takes it.
    ...(sampler === 'tcd' && body.eta !== null && { eta: tcdEta(body.eta) }),
    clipSkip: s.CLIP_stop_at_last_layers,
    attention: speed.attention,
    ...(speed.deepcache && { deepcache: speed.deepcache }),
    sMinUncond: speed.sMinUncond,
    sMinUncondAll: speed.sMinUncondAll,
    batchCondUncond: s.batch_cond_uncond,
    seeds: Array.from({ length: count }, (_, i) => seed + i),
    preview: !s.live_previews_enable ? 'off' : s.show_progress_type === 'TAESD' ? 'taesd' : 'cheap',
  };
  if (hires) {
    const name = body.hr_upscaler ?? 'Latent';
    const upscaler = HIRES_UPSCALERS[name] ?? (models.includes(name) ? name : undefined);
    if (!upscaler) throw new RequestError('hr_upscaler', `unknown hr_upscaler "${name}"; available: ${[...Object.keys(HIRES_UPSCALERS), ...models].join(', ')}`);
    const scale = body.hr_resize_x ? body.hr_resize_x / body.width : body.hr_resize_y ? body.hr_resize_y / body.height : (body.hr_scale ?? 2);
    if (![body.width, body.height].every((v) => Number.isInteger((v * scale) / 8))) {
      throw new RequestError('hr_scale', `hr_scale ${scale} gives a size of ${body.width * scale}x${body.height * scale}; both sides must be multiples of 8`);
    }
    // Without denoising_strength, 0, as A1111's own API tests send (its request model leaves None, which its step set-up cannot take).
    job.hires = { scale, denoise: body.denoising_strength ?? 0, upscaler, ...(body.hr_second_pass_steps ? { steps: body.hr_second_pass_steps } : {}), ...(speed.hiresDeepcache !== undefined && { deepcache: speed.hiresDeepcache }) };
  }
  if (tiled) job.tiling = tiled.tiling;
  if (kind === 'img2img') {
    const mode = body.resize_mode ?? 0;
    const init = flattenImage(await readClientImage(body.init_images![0]!, 'init_images.0'), s.img2img_background_color);
    job.strength = body.denoising_strength ?? 0.75;
    if (upscale) {
      if (body.mask) throw new RequestError('mask', 'SD upscale and a mask do not combine: drop one');
      job.sdUpscale = { ...upscale, batchSize: body.batch_size };
    } else if (tiled?.upscale) {
      ({ width: job.width, height: job.height } = tiledDiffusionCanvas(init, tiled.upscale, width, height));
      checkCanvas(job.width, job.height, 'Tiled Diffusion\'s upscale');
      const { upscaler, scale } = tiled.upscale;
      if (upscaler !== A1111_IMAGE_UPSCALERS.none) job.initUpscale = { upscaler, scale, resizeMode: mode };
    }
    // SD upscale keeps the picture as it is (width and height are its tiles'); the runner upscales and fits an initUpscale's.
    job.initImage = toWire(upscale || job.initUpscale ? init : fitImage(init, job.width, job.height, mode));
    if (body.mask) {
      const mask = maskImage(await readClientImage(body.mask, 'mask'));
      checkMaskShape(mask, init, job.width, job.height);
      job.mask = {
        image: toWire(fitImage(mask, job.width, job.height, mode)),
        blur: body.mask_blur ?? 4,
        invert: Number(body.inpainting_mask_invert) === 1,
        fill: INPAINTING_FILL[body.inpainting_fill ?? 1]!,
      };
    }
  }
  const units = controlNetArgs(body.alwayson_scripts);
  if (units) {
    // A control picture is flattened onto white, a mask read as grey (its alpha when it has one).
    const read = async (b64: string, field: string, mask?: boolean): Promise<RgbImage> => {
      const img = await readClientImage(b64, field);
      return mask ? maskImage(img) : flattenImage(img);
    };
    const controlnets = await a1111ControlUnits(units, read, controlNet, kind === 'img2img');
    if (controlnets.length > 0) job.controlnets = controlnets;
  }
  // The strength runs the steps A1111 runs for it (strength.ts), 0 included.
  if (job.initImage || job.hires) job.strengthRule = 'a1111';
  return { job, samplerLabel: label, speedMethods: speed.methods };
}

/** The `info` JSON string A1111 returns with generated images. */
export function a1111Info(body: GenerationBody, job: JobSpec, result: JobResult, samplerLabel: string, modelName: string, speed: object): string {
  const seeds = result.images.map((i) => i.seed);
  return JSON.stringify({
    prompt: job.prompt,
    all_prompts: seeds.map(() => job.prompt),
    negative_prompt: job.negativePrompt,
    all_negative_prompts: seeds.map(() => job.negativePrompt),
    seed: job.seeds[0],
    all_seeds: seeds,
    subseed: -1,
    all_subseeds: seeds.map(() => -1),
    subseed_strength: 0,
    width: job.width,
    height: job.height,
    sampler_name: samplerLabel,
    cfg_scale: job.cfg,
    steps: job.steps,
    batch_size: body.batch_size,
    restore_faces: false,
    face_restoration_model: null,
    sd_model_name: modelName,
    sd_model_hash: null,
    sd_vae_name: null,
    sd_vae_hash: null,
    seed_resize_from_w: -1,
    seed_resize_from_h: -1,
    denoising_strength: job.strength ?? job.hires?.denoise ?? null,
    // The extension's units, as the infotext holds them.
    extra_generation_params: Object.fromEntries(Object.entries(result.images[0] ? parseParameters(result.images[0].parameters).settings : {}).filter(([k]) => /^ControlNet \d+$/.test(k))),
    index_of_first_image: 0,
    infotexts: result.images.map((i) => i.parameters),
    styles: [],
    job_timestamp: new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14),
    clip_skip: job.clipSkip,
    is_using_inpainting_conditioning: false,
    interrupted: result.interrupted,
    version: 'todo-sd',
    // todo-sd's own: the speed methods on, per pass the FLOP-ideal and the measured speed-up.
    speed,
  });
}
