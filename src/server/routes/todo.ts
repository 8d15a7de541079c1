/**
 * todo-sd's own endpoints, for its page: the limits, the models with their native size, the
 * speed methods and their fields, and the speed-up their FLOP count predicts (per pass, over its steps).
 */
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../app.js';
import { RequestError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { modelFacts } from '../model-facts.js';
import { SPEEDUP_SCHEMA } from '../schemas.js';
import { SPEED_FIELDS, SPEED_METHODS, speedJob } from '../speed-methods.js';

export function registerTodoRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/todo-sd/v1/limits', async () => ({ ...LIMITS, maxMemoryMiB: ctx.maxMemoryMiB }));

  // A model whose configs cannot be read is listed with the reason, not hidden.
  app.get('/todo-sd/v1/models', async () =>
    ctx.registry.list().map((m) => {
      try {
        const f = modelFacts(m.path);
        return { title: m.title, model_name: m.name, family: f.family, native_width: f.nativeSize, native_height: f.nativeSize };
      } catch (e) {
        return { title: m.title, model_name: m.name, error: (e as Error).message };
      }
    }),
  );

  app.get('/todo-sd/v1/speed-methods', async () => ({
    methods: SPEED_METHODS.map(({ id, label, help, fields }) => ({ id, label, help, fields })),
  }));

  app.get('/todo-sd/v1/speedup', { schema: { querystring: SPEEDUP_SCHEMA } }, async (req) => {
    const q = req.query as Record<string, number | string> & { width: number; height: number; steps: number; model?: string; hr_scale?: number | null; hr_second_pass_steps?: number | null };
    const patch: Record<string, unknown> = Object.fromEntries(SPEED_FIELDS.filter((f) => q[f.key] !== undefined).map((f) => [f.key, q[f.key]]));
    if (q.model !== undefined) patch.sd_model_checkpoint = q.model;
    const s = ctx.settings.merged(patch, '');
    const hires = q.hr_scale ? { scale: q.hr_scale, steps: q.hr_second_pass_steps || q.steps } : undefined;
    const job = speedJob(s, ctx.settings.speedModel(s.sd_model_checkpoint), '', hires !== undefined);
    const model = ctx.registry.resolve(s.sd_model_checkpoint);
    try {
      return { model: model.title, methods: job.methods, passes: ctx.speedup.passes(model.path, q.width, q.height, hires, job, q.steps) };
    } catch (e) {
      throw new RequestError('sd_model_checkpoint', `cannot count FLOPs for ${model.title}: ${(e as Error).message}`);
    }
  });
}
