/**
 * AUTOMATIC1111's upscaling endpoints: the upscaler lists (`/sdapi/v1/upscalers`,
 * `/realesrgan-models`) and the Extras tab's API (`/extra-single-image`, `/extra-batch-images`).
 * Upscaling runs on the job queue like a generation (A1111 holds its queue lock for it too), so
 * it never competes with a running job for memory and reaches Redis workers. Face restoration
 * (GFPGAN, CodeFormer) is not offered: its fields are accepted, and `html_info` says it was skipped.
 */
import { statSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { openWeightsFile } from '../../io/weights-file.js';
import type { UpscalerEntry } from '../../models/upscaler/folders.js';
import { detectUpscaler } from '../../models/upscaler/upscaler.js';
import { A1111_IMAGE_UPSCALERS, upscaleTarget } from '../../pipeline/upscale-image.js';
import { flattenImage } from '../../image/decode.js';
import { readClientImage } from '../a1111.js';
import type { ServerContext } from '../app.js';
import { RequestError } from '../errors.js';
import type { ExtrasJob } from '../jobs.js';
import { LIMITS } from '../limits.js';
import { toWire } from '../runner.js';

const num = (def: number, min: number, max?: number): object => ({ type: ['number', 'null'], default: def, minimum: min, ...(max !== undefined && { maximum: max }) });
const maxSide = LIMITS.maxSize * 4;

const EXTRAS_FIELDS = {
  resize_mode: { type: 'integer', default: 0, minimum: 0, maximum: 1 },
  show_extras_results: { type: ['boolean', 'null'], default: true },
  gfpgan_visibility: num(0, 0, 1),
  codeformer_visibility: num(0, 0, 1),
  codeformer_weight: num(0, 0, 1),
  upscaling_resize: num(2, 1, 8),
  upscaling_resize_w: { type: 'integer', default: 512, minimum: 1, maximum: maxSide },
  upscaling_resize_h: { type: 'integer', default: 512, minimum: 1, maximum: maxSide },
  upscaling_crop: { type: ['boolean', 'null'], default: true },
  upscaler_1: { type: ['string', 'null'], default: 'None' },
  upscaler_2: { type: ['string', 'null'], default: 'None' },
  extras_upscaler_2_visibility: num(0, 0, 1),
  upscale_first: { type: ['boolean', 'null'], default: false },
} as const;

export const EXTRA_SINGLE_IMAGE_SCHEMA = {
  type: 'object',
  required: ['image'],
  properties: { ...EXTRAS_FIELDS, image: { type: 'string', minLength: 1 } },
} as const;

export const EXTRA_BATCH_IMAGES_SCHEMA = {
  type: 'object',
  required: ['imageList'],
  properties: {
    ...EXTRAS_FIELDS,
    imageList: { type: 'array', minItems: 1, maxItems: LIMITS.maxBatchSize * LIMITS.maxIterations, items: { type: 'object', required: ['data'], properties: { data: { type: 'string', minLength: 1 }, name: { type: ['string', 'null'] } } } },
  },
} as const;

interface ExtrasBody {
  resize_mode: number;
  gfpgan_visibility: number | null;
  codeformer_visibility: number | null;
  upscaling_resize: number | null;
  upscaling_resize_w: number;
  upscaling_resize_h: number;
  upscaling_crop: boolean | null;
  upscaler_1: string | null;
  upscaler_2: string | null;
  extras_upscaler_2_visibility: number | null;
}

/** The built-in upscalers, first in /upscalers (the SD upscale script's upscaler_index counts in that list: scripts.ts's upscalerList). */
const BUILT_IN = Object.values(A1111_IMAGE_UPSCALERS);

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)} GiB`;

export function registerExtras(app: FastifyInstance, ctx: ServerContext): void {
  const api = '/sdapi/v1';
  const { registry, queue } = ctx;
  // A model's scale, read from its file once (per modification time).
  const scales = new Map<string, number>();
  const scaleOf = (e: UpscalerEntry): number => {
    const key = `${e.path}:${statSync(e.path).mtimeMs}`;
    let s = scales.get(key);
    if (s === undefined) {
      try {
        s = detectUpscaler(openWeightsFile(e.path)).config.scale;
      } catch {
        // Listed all the same (A1111 lists every file); using it reports what is wrong with it.
        s = e.scale ?? 4;
      }
      scales.set(key, s);
    }
    return s;
  };

  app.get(`${api}/upscalers`, async () => [
    ...BUILT_IN.map((name) => ({ name, model_name: null, model_path: null, model_url: null, scale: 4 })),
    // A1111's ESRGAN upscaler reports its default model's name for every file it lists.
    ...registry.upscalers().list().map((e) => ({ name: e.name, model_name: e.folder === 'ESRGAN' ? 'ESRGAN_4x' : null, model_path: e.path, model_url: null, scale: scaleOf(e) })),
  ]);
  app.get(`${api}/realesrgan-models`, async () =>
    registry
      .upscalers()
      .list()
      .filter((e) => e.folder === 'RealESRGAN')
      .map((e) => ({ name: e.name, path: e.path, scale: scaleOf(e) })),
  );

  const extras = async (b: ExtrasBody, inputs: { data: string; field: string }[]): Promise<{ images: string[]; html_info: string }> => {
    const models = registry.upscalers().list();
    const find = (name: string, field: string): UpscalerEntry | undefined => {
      if (BUILT_IN.includes(name)) return undefined;
      const hit = models.find((m) => m.name === name);
      if (!hit) throw new RequestError(field, `unknown upscaler "${name}"; available: ${[...BUILT_IN, ...models.map((m) => m.name)].join(', ')} (models are looked up in --models-dir's ESRGAN/ and RealESRGAN/)`);
      return hit;
    };
    const upscaler = b.upscaler_1 ?? 'None';
    const upscaler2 = b.upscaler_2 ?? 'None';
    const visibility = b.extras_upscaler_2_visibility ?? 0;
    const model = find(upscaler, 'upscaler_1');
    const model2 = visibility > 0 ? find(upscaler2, 'upscaler_2') : undefined;
    // Transparent parts over white, as the upscalers take RGB.
    const images = await Promise.all(inputs.map(async ({ data, field }) => flattenImage(await readClientImage(data, field))));
    const job: ExtrasJob = {
      kind: 'extras',
      images: images.map(toWire),
      mode: b.resize_mode === 1 ? 'to' : 'by',
      by: b.upscaling_resize ?? 2,
      width: b.upscaling_resize_w,
      height: b.upscaling_resize_h,
      crop: b.upscaling_crop ?? true,
      upscaler,
      upscaler2,
      upscaler2Visibility: visibility,
    };
    if (upscaler !== 'None') {
      // The largest image a model pass makes (A1111 repeats a model until the size is reached) must fit.
      const largest = Math.max(...[model, model2].map((m) => (m ? scaleOf(m) : 1)));
      let bytes = 0;
      for (const img of images) {
        const by = job.mode === 'to' ? Math.max(job.width / img.width, job.height / img.height) : job.by;
        const [w, h] = upscaleTarget(img.width, img.height, by);
        if (w > maxSide || h > maxSide) throw new RequestError('upscaling_resize', `the result would be ${w}x${h}; at most ${maxSide}x${maxSide} pixels`);
        let side = img.width * img.height;
        for (let i = 0; i < 3 && largest > 1 && side < w * h; i++) side *= largest * largest;
        // fp32 planes of the model's output and its 8-bit copies, plus a 512-pixel tile's activations at the model's scale.
        bytes = Math.max(bytes, side * 3 * 4 * 3 + 512 * 512 * largest * largest * 64 * 4 * 4);
      }
      if (bytes > ctx.maxMemoryMiB * 2 ** 20) {
        throw new RequestError('upscaling_resize', `this upscale needs about ${gib(bytes)} but the server allows ${gib(ctx.maxMemoryMiB * 2 ** 20)} per job (--max-memory); ask for a smaller upscaling_resize or smaller images`, 'value_error.memory');
      }
    }
    const result = await queue.run(job);
    const faces = (b.gfpgan_visibility ?? 0) > 0 || (b.codeformer_visibility ?? 0) > 0 ? ['Face restoration (GFPGAN, CodeFormer) is not available in todo-sd: skipped'] : [];
    const text = [result.images[0]?.parameters ?? '', ...faces].filter(Boolean).join('\n');
    return { images: result.images.map((i) => i.png), html_info: `<p>${text.split('\n').map(escapeHtml).join('<br>\n')}</p>` };
  };

  app.post(`${api}/extra-single-image`, { schema: { body: EXTRA_SINGLE_IMAGE_SCHEMA } }, async (req) => {
    const b = req.body as ExtrasBody & { image: string };
    const r = await extras(b, [{ data: b.image, field: 'image' }]);
    return { html_info: r.html_info, image: r.images[0] ?? null };
  });
  app.post(`${api}/extra-batch-images`, { schema: { body: EXTRA_BATCH_IMAGES_SCHEMA } }, async (req) => {
    const b = req.body as ExtrasBody & { imageList: { data: string }[] };
    return extras(b, b.imageList.map((img, i) => ({ data: img.data, field: `imageList.${i}.data` })));
  });
}

/** Python's html.escape. */
function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#x27;');
}
