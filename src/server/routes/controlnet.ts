/**
 * The AUTOMATIC1111 ControlNet extension's own endpoints (`/controlnet/…`, API version 3): the
 * models in `--models-dir`'s ControlNet/ folder, the preprocessors with their sliders, and
 * `detect` (run a preprocessor on pictures).
 */
import type { FastifyInstance } from 'fastify';
import { flattenImage } from '../../image/decode.js';
import { encodePng } from '../../io/png.js';
import {
  CONTROL_PREPROCESSORS,
  PREPROCESSOR_LABELS,
  PREPROCESSOR_PRIORITY,
  PREPROCESSOR_SLIDERS,
  preprocessControl,
  sliderValue,
  type ControlPreprocessor,
} from '../../pipeline/control-image.js';
import { readClientImage } from '../a1111.js';
import type { ServerContext } from '../app.js';
import { RequestError } from '../errors.js';

/** The extension's API version. */
export const CONTROLNET_API_VERSION = 3;

const label = (p: ControlPreprocessor): string => PREPROCESSOR_LABELS[p] ?? p;

/** "none" first, then by priority and label, highest first (the extension's get_sorted_preprocessors). */
function sortedPreprocessors(): ControlPreprocessor[] {
  const key = (p: ControlPreprocessor): string => String(PREPROCESSOR_PRIORITY[p]).padStart(8, '0') + label(p);
  return ['none', ...CONTROL_PREPROCESSORS.filter((p) => p !== 'none').sort((a, b) => (key(a) < key(b) ? 1 : -1))];
}

const DETECT_SCHEMA = {
  type: 'object',
  properties: {
    controlnet_module: { type: 'string', default: 'none' },
    controlnet_input_images: { type: 'array', items: { type: 'string' }, default: [] },
    controlnet_processor_res: { type: 'number', default: -1 },
    controlnet_threshold_a: { type: 'number', default: -1 },
    controlnet_threshold_b: { type: 'number', default: -1 },
  },
} as const;

export function registerControlNetRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/controlnet/version', async () => ({ version: CONTROLNET_API_VERSION }));
  app.get('/controlnet/model_list', async () => ({ model_list: ctx.registry.controlNets().map((c) => c.title) }));
  app.get('/controlnet/module_list', async (req) => {
    const alias = ['true', '1'].includes(String((req.query as { alias_names?: string }).alias_names ?? '').toLowerCase());
    const list = sortedPreprocessors();
    const name = (p: ControlPreprocessor): string => (alias ? label(p) : p);
    return {
      module_list: list.map(name),
      module_detail: Object.fromEntries(
        list.map((p) => {
          const s = PREPROCESSOR_SLIDERS[p];
          return [name(p), { model_free: false, sliders: [s.resolution, s.a, s.b].filter((v) => v !== undefined) }];
        }),
      ),
    };
  });
  app.get('/controlnet/settings', async () => ({ control_net_unit_count: 3 }));

  app.post('/controlnet/detect', { schema: { body: DETECT_SCHEMA } }, async (req) => {
    const b = req.body as { controlnet_module: string; controlnet_input_images: string[]; controlnet_processor_res: number; controlnet_threshold_a: number; controlnet_threshold_b: number };
    const module = (CONTROL_PREPROCESSORS as readonly string[]).includes(b.controlnet_module)
      ? (b.controlnet_module as ControlPreprocessor)
      : CONTROL_PREPROCESSORS.find((p) => label(p) === b.controlnet_module);
    if (!module) throw new RequestError('controlnet_module', `module "${b.controlnet_module}" is not available; todo-sd has ${CONTROL_PREPROCESSORS.join(', ')}`);
    if (module === 'inpaint' || module === 'inpaint_only') throw new RequestError('controlnet_module', `${b.controlnet_module} passes the picture through with its mask; there is nothing to detect`);
    if (b.controlnet_input_images.length === 0) throw new RequestError('controlnet_input_images', 'No image selected');
    const s = PREPROCESSOR_SLIDERS[module];
    const settings = {
      resolution: sliderValue(s.resolution, b.controlnet_processor_res),
      thresholdA: sliderValue(s.a, b.controlnet_threshold_a),
      thresholdB: sliderValue(s.b, b.controlnet_threshold_b),
    };
    const images: string[] = [];
    for (const [i, text] of b.controlnet_input_images.entries()) {
      const img = flattenImage(await readClientImage(text, `controlnet_input_images.${i}`));
      images.push(Buffer.from(encodePng(preprocessControl(img, undefined, module, settings))).toString('base64'));
    }
    return { images, info: 'Success' };
  });
}
