/**
 * The A1111 ControlNet extension's API: `/controlnet/version`, `model_list` (models from
 * --models-dir's ControlNet/ folder, titled `name [hash]`), `module_list`, `detect`, and units in
 * `alwayson_scripts.controlnet.args` on txt2img / img2img, with the extension's field names,
 * legacy aliases, model matching and 422s for what cannot run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { encodePng, readPngText } from '../src/io/png.js';
import { writeRandomModel } from '../src/models/random-model.js';
import { createServer } from '../src/server/app.js';
import { ModelRegistry } from '../src/server/models.js';
import { LocalQueue } from '../src/server/queue-local.js';
import { JobRunner } from '../src/server/runner.js';
import { a1111ModelHash } from '../src/pipeline/controlnet-infotext.js';
import { preprocessControl } from '../src/pipeline/control-image.js';
import { decodeImage } from '../src/io/image.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { controlNetModels } from './controlnet-models.js';
import { tensorsOf, writeTorchFile } from './torch-writer.js';

const m = controlNetModels();
const root = mkdtempSync(join(tmpdir(), 'todo-sd-cn-serve-'));
const modelsDir = join(root, 'models');
let app: FastifyInstance;
const stripes = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => ((i / 3) % 32 < 16 ? 30 : 220)) };
const b64 = Buffer.from(encodePng(stripes)).toString('base64');

before(async () => {
  mkdirSync(join(modelsDir, 'ControlNet', 'sdxl'), { recursive: true });
  writeRandomModel(join(modelsDir, 'tiny'), 'tiny', { seed: 3 });
  cpSync(m.cnFile, join(modelsDir, 'ControlNet', 'control_tiny_canny.safetensors'));
  cpSync(m.cnFile.replace(/\.safetensors$/, '.yaml'), join(modelsDir, 'ControlNet', 'control_tiny_canny.yaml'));
  cpSync(m.cnXlFile, join(modelsDir, 'ControlNet', 'sdxl', 'diffusers_xl_tiny.safetensors'));
  // A1111's ControlNets are often PyTorch files (control_v11*.pth).
  writeTorchFile(join(modelsDir, 'ControlNet', 'control_tiny_pth.pth'), tensorsOf(SafetensorsFile.open(m.cnFile)), { format: 'zip' });
  cpSync(m.cn, join(modelsDir, 'ControlNet', 'tiny-folder'), { recursive: true });
  const registry = new ModelRegistry(modelsDir);
  app = await createServer({ registry, queue: new LocalQueue(new JobRunner(registry)), outputsDir: join(root, 'outputs'), model: 'tiny' });
});
after(() => app.close());

async function get<T>(url: string): Promise<T> {
  const r = await app.inject({ method: 'GET', url });
  assert.equal(r.statusCode, 200, r.body);
  return r.json() as T;
}

const txt2img = (args: unknown[], extra: object = {}) =>
  app.inject({ method: 'POST', url: '/sdapi/v1/txt2img', payload: { prompt: 'a cat', width: 32, height: 32, steps: 2, seed: 7, alwayson_scripts: { controlnet: { args } }, ...extra } });

test('version, model list (with A1111 hashes, subfolders and diffusers folders), module list with sliders', async () => {
  assert.deepEqual(await get('/controlnet/version'), { version: 3 });
  const hash = a1111ModelHash(join(modelsDir, 'ControlNet', 'control_tiny_canny.safetensors'));
  const models = await get<{ model_list: string[] }>('/controlnet/model_list');
  assert.deepEqual(models.model_list.map((t) => t.replace(/ \[[0-9a-f]{8}\]$/, '')), ['control_tiny_canny', 'control_tiny_pth', 'diffusers_xl_tiny', 'tiny-folder']);
  assert.equal(models.model_list[0], `control_tiny_canny [${hash}]`);
  const modules = await get<{ module_list: string[]; module_detail: Record<string, { sliders: { name: string; value: number }[] }> }>('/controlnet/module_list');
  assert.deepEqual(modules.module_list, ['none', 'tile_resample', 'inpaint_only', 'canny', 'inpaint']);
  assert.deepEqual(modules.module_detail.canny!.sliders.map((s) => [s.name, s.value]), [['Resolution', 512], ['Low Threshold', 100], ['High Threshold', 200]]);
  assert.deepEqual(modules.module_detail.tile_resample!.sliders.map((s) => s.name), ['Down Sampling Rate']);
  const aliases = await get<{ module_list: string[] }>('/controlnet/module_list?alias_names=true');
  assert.ok(aliases.module_list.includes('inpaint_global_harmonious'));
});

test('detect runs a preprocessor on base64 pictures', async () => {
  const r = await app.inject({ method: 'POST', url: '/controlnet/detect', payload: { controlnet_module: 'canny', controlnet_input_images: [b64], controlnet_processor_res: 64 } });
  assert.equal(r.statusCode, 200, r.body);
  const body = r.json() as { images: string[]; info: string };
  assert.equal(body.info, 'Success');
  const want = preprocessControl(stripes, undefined, 'canny', { resolution: 64, thresholdA: 100, thresholdB: 200 });
  assert.deepEqual((await decodeImage(Buffer.from(body.images[0]!, 'base64'))).data, want.data);
  const bad = await app.inject({ method: 'POST', url: '/controlnet/detect', payload: { controlnet_module: 'openpose', controlnet_input_images: [b64] } });
  assert.equal(bad.statusCode, 422);
});

test("txt2img with units: the extension's fields and model matching; the infotext and info carry ControlNet 0", async () => {
  const r = await txt2img([{ enabled: true, module: 'canny', model: 'canny', weight: 0.9, image: b64, resize_mode: 'Inner Fit (Scale to Fit)', processor_res: 64, threshold_a: 90, threshold_b: 180, guidance_start: 0, guidance_end: 0.5, control_mode: 1, pixel_perfect: false }, { enabled: false, model: 'nothing-like-this' }]);
  assert.equal(r.statusCode, 200, r.body);
  const body = r.json() as { images: string[]; info: string };
  const parameters = readPngText(Buffer.from(body.images[0]!, 'base64')).parameters!;
  assert.match(parameters, /ControlNet 0: "Module: canny, Model: control_tiny_canny \[[0-9a-f]{8}\], Weight: 0\.9, Resize Mode: Crop and Resize, Processor Res: 64, Threshold A: 90\.0, Threshold B: 180\.0, Guidance Start: 0\.0, Guidance End: 0\.5, Pixel Perfect: False, Control Mode: My prompt is more important"/);
  const info = JSON.parse(body.info) as { extra_generation_params: Record<string, string> };
  assert.match(info.extra_generation_params['ControlNet 0']!, /^Module: canny, Model: control_tiny_canny/);
  // Legacy fields: input_image, guidance, guessmode; a folder model by its name.
  const legacy = await txt2img([{ enabled: true, model: 'tiny-folder', input_image: b64, guidance: 0.8, guessmode: true }]);
  assert.equal(legacy.statusCode, 200, legacy.body);
  assert.match(readPngText(Buffer.from((legacy.json() as { images: string[] }).images[0]!, 'base64')).parameters!, /Model: tiny-folder \[[0-9a-f]{8}\], .*Guidance End: 0\.8, .*Control Mode: ControlNet is more important/);
});

test('units that cannot run are 422s naming the field: unknown model or module, another family, no image, bad values', async () => {
  const detail = async (args: unknown[], extra: object = {}): Promise<{ loc: unknown[]; msg: string }> => {
    const r = await txt2img(args, extra);
    assert.equal(r.statusCode, 422, r.body);
    return (r.json() as { detail: { loc: unknown[]; msg: string }[] }).detail[0]!;
  };
  let d = await detail([{ enabled: true, model: 'depth', image: b64 }]);
  assert.deepEqual(d.loc, ['body', 'alwayson_scripts', 'controlnet', 'args', 0, 'model']);
  assert.match(d.msg, /unknown ControlNet model "depth"; available: control_tiny_canny \[/);
  d = await detail([{ enabled: true, model: 'diffusers_xl_tiny', image: b64 }]);
  assert.match(d.msg, /diffusers_xl_tiny\.safetensors is an SDXL ControlNet \(it takes SDXL's pooled text and time ids\), but the model is not SDXL: use a ControlNet made for this model's family/);
  // The same ControlNet as a folder (its config says it all): the family check proper.
  cpSync(m.cnXl, join(modelsDir, 'ControlNet', 'xl-folder'), { recursive: true });
  d = await detail([{ enabled: true, model: 'xl-folder', image: b64 }]);
  assert.match(d.msg, /ControlNet xl-folder is for a model with cross_attention_dim 24 \(text_time\), but the model is a model with cross_attention_dim 32/);
  d = await detail([{ enabled: true, model: 'canny' }]);
  assert.match(d.msg, /ControlNet is enabled but no input image is given/);
  d = await detail([{ enabled: true, model: 'canny', image: b64, module: 'openpose_full' }]);
  assert.deepEqual(d.loc.slice(-1), ['module']);
  d = await detail([{ enabled: true, model: 'canny', image: b64, weight: 3 }]);
  assert.match(d.msg, /weight must be from 0 to 2/);
  d = await detail([{ enabled: true, model: 'canny', image: b64, guidance_start: 0.7, guidance_end: 0.2 }]);
  assert.match(d.msg, /guidance_start \(0\.7\) > guidance_end \(0\.2\)/);
  d = await detail([{ enabled: true, model: 'canny', image: b64, control_mode: 'louder' }]);
  assert.match(d.msg, /control_mode must be 0-2 or one of Balanced/);
  d = await detail([{ enabled: true, model: 'canny', image: 'not base64 png' }]);
  assert.deepEqual(d.loc.slice(-1), ['image']);
  d = await detail([{ enabled: true, model: 'canny', image: b64, module: 'inpaint', mask: Buffer.from(encodePng({ width: 8, height: 8, data: new Uint8Array(192) })).toString('base64') }]);
  assert.match(d.msg, /not aligned with mask shape/);
});

test('img2img: a unit without an image takes the init image; inpaint takes the request mask', async () => {
  const mask = Buffer.from(encodePng({ width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (Math.floor(i / 3) % 32 < 8 ? 255 : 0)) })).toString('base64');
  const r = await app.inject({
    method: 'POST',
    url: '/sdapi/v1/img2img',
    payload: { prompt: 'x', init_images: [b64], mask, width: 32, height: 32, steps: 2, seed: 1, denoising_strength: 0.6, alwayson_scripts: { ControlNet: { args: [{ enabled: true, model: 'control_tiny_canny', module: 'inpaint_global_harmonious' }] } } },
  });
  assert.equal(r.statusCode, 200, r.body);
  assert.match(readPngText(Buffer.from((r.json() as { images: string[] }).images[0]!, 'base64')).parameters!, /ControlNet 0: "Module: inpaint_global_harmonious, Model: control_tiny_canny/);
});
