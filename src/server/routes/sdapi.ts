/** AUTOMATIC1111's `/sdapi/v1` endpoints, with its request fields and response shapes. */
import { mkdirSync, readdirSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { decodeBase64 } from '../../image/decode.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { readImageText } from '../../io/image.js';
import { TILING_DEFAULTS } from '../../pipeline/multidiffusion.js';
import { phaseLabel } from '../../runtime/progress.js';
import { modelFacts } from '../model-facts.js';
import { A1111_SAMPLERS } from '../../scheduler/names.js';
import { A1111_SCHEDULERS, a1111Info, LATENT_UPSCALE_MODES, toJob, type GenerationBody } from '../a1111.js';
import { A1111_FLAGS } from '../a1111-flags.js';
import { checkControlNetsFit } from '../controlnet-units.js';
import type { ServerContext } from '../app.js';
import { onField, RequestError } from '../errors.js';
import { infotextFields } from '../infotext.js';
import { SD_UPSCALE_SCRIPT, TILED_DIFFUSION_SCRIPT } from '../scripts.js';
import type { JobProgress, JobResult, JobSpec } from '../jobs.js';
import { estimateJobMemory, memoryRefusal } from '../limits.js';
import { IMG2IMG_SCHEMA, OPTIONS_SCHEMA, PNG_INFO_SCHEMA, TXT2IMG_SCHEMA } from '../schemas.js';
import type { SettingsPatch } from '../settings.js';

const EMPTY_LIST_ENDPOINTS = ['face-restorers', 'hypernetworks', 'sd-vae', 'sd-modules', 'script-info', 'extensions'];

/** Saves PNGs as A1111 names them (`00000-seed.png`), each through an atomic write. */
function saveImages(dir: string, result: JobResult): void {
  mkdirSync(dir, { recursive: true });
  let n = readdirSync(dir).reduce((m, f) => Math.max(m, (/^(\d{5})-/.exec(f)?.[1] ?? -1) as number), -1) + 1;
  for (const img of result.images) writeFileAtomic(join(dir, `${String(n++).padStart(5, '0')}-${img.seed}.png`), Buffer.from(img.png, 'base64'));
}

/** The size the U-Net runs at: a Tiled Diffusion job's views (the speed-up per view is the job's), else the image. */
function unetSize(job: JobSpec, vaeScale: number): { width: number; height: number } {
  if (!job.tiling) return job;
  const view = (job.tiling.window ?? TILING_DEFAULTS.window) * vaeScale;
  return { width: Math.min(job.width, view), height: Math.min(job.height, view) };
}

/** The slow phase in progress (loading, graph building, …) with its time so far. */
function phaseNow(p: JobProgress | undefined): { name: string; label: string; seconds: number } | null {
  return p?.phase ? { name: p.phase.name, label: phaseLabel(p.phase.name), seconds: (Date.now() - p.phase.since) / 1000 } : null;
}

/** A1111's `textinfo`: the phase in progress, then the queue. */
function jobText(p: JobProgress | undefined, running: number, waiting: number): string {
  const phase = phaseNow(p);
  const queue = `${running} running, ${waiting} waiting`;
  return phase ? `${phase.label} (${phase.seconds.toFixed(1)} s); ${queue}` : queue;
}

export function registerSdapi(app: FastifyInstance, ctx: ServerContext): void {
  const api = '/sdapi/v1';
  const { registry, settings, queue } = ctx;

  const generate = async (kind: JobSpec['kind'], body: GenerationBody): Promise<object> => {
    const { job, samplerLabel, speedMethods } = await toJob(
      kind,
      body,
      settings,
      () => registry.upscalers().list().map((u) => u.name),
      (name) => registry.resolveControlNet(name).name,
    );
    const model = registry.resolve(job.model);
    checkControlNetsFit(job.controlnets ?? [], model.path, (name) => registry.resolveControlNet(name).path);
    const refusal = memoryRefusal(estimateJobMemory(job, model.path, (job.controlnets ?? []).map((u) => registry.resolveControlNet(u.model).path)), ctx.maxMemoryMiB);
    if (refusal) throw new RequestError('width', refusal, 'value_error.memory');
    const result = await queue.run(job);
    if (body.save_images) saveImages(ctx.outputsDir, result);
    const parameters = kind === 'img2img' && !body.include_init_images ? { ...body, init_images: null, mask: null } : body;
    const measured = ctx.denseRates.compare(job, speedMethods.length === 0, result.timing);
    const size = unetSize(job, modelFacts(model.path).vaeScale);
    const hires = job.hires && { scale: job.hires.scale, steps: job.hires.steps ?? job.steps };
    const predicted = ctx.speedup.passes(model.path, size.width, size.height, hires, { attention: job.attention, deepcache: job.deepcache, hiresDeepcache: job.hires?.deepcache }, job.steps);
    const speed = { methods: speedMethods, passes: predicted.map((p) => ({ ...p, ...measured.find((m) => m.pass === p.pass) })) };
    return { images: body.send_images ? result.images.map((i) => i.png) : [], parameters, info: a1111Info(body, job, result, samplerLabel, model.name, speed) };
  };

  app.post(`${api}/txt2img`, { schema: { body: TXT2IMG_SCHEMA } }, (req) => generate('txt2img', req.body as GenerationBody));
  app.post(`${api}/img2img`, { schema: { body: IMG2IMG_SCHEMA } }, (req) => generate('img2img', req.body as GenerationBody));

  app.get(`${api}/progress`, async () => {
    const { running, waiting, flags } = await queue.status();
    const job = running[0];
    const p = job?.progress;
    const done = p ? (p.image + p.step / p.steps) / p.images : 0;
    const elapsed = job ? (Date.now() - job.startedAt) / 1000 : 0;
    return {
      progress: done,
      eta_relative: done > 0 ? (elapsed / done) * (1 - done) : 0,
      state: {
        skipped: flags.skipped,
        interrupted: flags.interrupted,
        stopping_generation: false,
        job: job ? `job ${job.id}` : '',
        job_count: job ? (p?.images ?? 1) + waiting : 0,
        job_timestamp: job ? new Date(job.startedAt).toISOString().replace(/[-:T]/g, '').slice(0, 14) : '0',
        job_no: p?.image ?? 0,
        sampling_step: p?.step ?? 0,
        sampling_steps: p?.steps ?? 0,
      },
      current_image: p?.preview ?? null,
      textinfo: job ? jobText(p, running.length, waiting) : null,
      // todo-sd's own: the phase as data, for the page.
      phase: phaseNow(p),
      current_task: job?.id ?? null,
    };
  });

  app.post(`${api}/interrupt`, async () => {
    await queue.interrupt();
    return {};
  });
  app.post(`${api}/skip`, async () => {
    await queue.skip();
    return {};
  });

  app.get(`${api}/options`, async () => settings.get());
  app.post(`${api}/options`, { schema: { body: OPTIONS_SCHEMA } }, async (req) => {
    settings.update(req.body as SettingsPatch);
    return null;
  });

  app.get(`${api}/sd-models`, async () =>
    registry.list().map((m) => ({ title: m.title, model_name: m.name, hash: null, sha256: null, filename: m.path, config: null })),
  );
  app.post(`${api}/refresh-checkpoints`, async () => null);
  app.get(`${api}/samplers`, async () => A1111_SAMPLERS.map((name) => ({ name, aliases: [], options: name.endsWith(' Karras') ? { scheduler: 'karras' } : {} })));
  app.get(`${api}/schedulers`, async () => A1111_SCHEDULERS);
  app.get(`${api}/latent-upscale-modes`, async () => LATENT_UPSCALE_MODES.map((name) => ({ name })));
  app.get(`${api}/loras`, async () => registry.loras().map((l) => ({ name: l.name, alias: l.name, path: l.path, metadata: {} })));
  app.post(`${api}/refresh-loras`, async () => null);
  app.post(`${api}/refresh-embeddings`, async () => null);
  app.post(`${api}/refresh-vae`, async () => null);
  // This process's memory, as A1111 reports its own (rss of the total); no CUDA allocator to report.
  app.get(`${api}/memory`, async () => {
    const used = process.memoryUsage.rss();
    return { ram: { free: totalmem() - used, used, total: totalmem() }, cuda: { error: 'unavailable' } };
  });
  app.get(`${api}/embeddings`, async () => ({ loaded: {}, skipped: {} }));
  app.get(`${api}/prompt-styles`, async () => []);
  app.get(`${api}/scripts`, async () => ({ txt2img: [TILED_DIFFUSION_SCRIPT], img2img: [SD_UPSCALE_SCRIPT, TILED_DIFFUSION_SCRIPT] }));
  for (const name of EMPTY_LIST_ENDPOINTS) app.get(`${api}/${name}`, async () => []);
  app.get(`${api}/cmd-flags`, async () => ({ ...A1111_FLAGS, api: true, nowebui: false, ckpt_dir: registry.modelsDir ?? null, lora_dir: registry.loraDir ?? null, ...ctx.flags }));

  app.post(`${api}/png-info`, { schema: { body: PNG_INFO_SCHEMA } }, async (req) => {
    const text = await onField('image', () => readImageText(decodeBase64((req.body as { image: string }).image), { what: 'image' }));
    const info = text.parameters ?? '';
    return { info, items: Object.fromEntries(Object.entries(text).filter(([k]) => k !== 'parameters')), parameters: info ? infotextFields(info) : {} };
  });
}
