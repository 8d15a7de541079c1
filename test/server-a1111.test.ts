// The server as an AUTOMATIC1111 v1.10.1 client sees it, on the built-in model: A1111's own API
// test payloads (test/test_txt2img.py, test_img2img.py, test_extras.py, test_utils.py), and per
// endpoint a client that reads every field A1111's response models (modules/api/models.py) document.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { encode } from 'fast-png';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { readPngText, writeSafetensors } from '../src/index.js';
import { pngChunk } from '../src/io/png.js';
import { createServer } from '../src/server/app.js';
import { ModelRegistry } from '../src/server/models.js';
import { LocalQueue } from '../src/server/queue-local.js';
import { JobRunner } from '../src/server/runner.js';

const root = mkdtempSync(join(tmpdir(), 'todo-sd-a1111-'));
const modelsDir = join(root, 'models');
let app: FastifyInstance;

before(async () => {
  mkdirSync(join(modelsDir, 'Lora'), { recursive: true });
  // A LoRA for a wider model: its cross-attention key takes 768 text channels; the built-in model's takes 32.
  const rand = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.01);
  writeSafetensors(join(modelsDir, 'Lora', 'sd15-style.safetensors'), {
    'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': { dtype: 'F32', shape: [2, 768], data: rand(2 * 768) },
    'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight': { dtype: 'F32', shape: [64, 2], data: rand(64 * 2) },
  });
  const registry = new ModelRegistry(modelsDir);
  app = await createServer({ registry, queue: new LocalQueue(new JobRunner(registry)), outputsDir: join(root, 'outputs') });
});
after(() => app.close());

type Json = Record<string, unknown>;

async function post<T = Json>(path: string, payload: object): Promise<{ status: number; body: T }> {
  const r = await app.inject({ method: 'POST', url: `/sdapi/v1/${path}`, payload });
  return { status: r.statusCode, body: r.json() as T };
}

async function get<T = Json>(path: string): Promise<T> {
  const r = await app.inject({ method: 'GET', url: `/sdapi/v1/${path}` });
  assert.equal(r.statusCode, 200, r.body);
  return r.json() as T;
}

/** Every documented field is there (extra fields are allowed, as pydantic clients ignore them). */
function hasFields(obj: unknown, fields: readonly string[], what: string): void {
  assert.ok(obj !== null && typeof obj === 'object', `${what}: ${JSON.stringify(obj)}`);
  const missing = fields.filter((f) => !(f in (obj as Json)));
  assert.deepEqual(missing, [], `${what} lacks ${missing.join(', ')}`);
}

// Processed.js() in modules/processing.py.
const INFO_FIELDS = ['prompt', 'all_prompts', 'negative_prompt', 'all_negative_prompts', 'seed', 'all_seeds', 'subseed', 'all_subseeds', 'subseed_strength', 'width', 'height', 'sampler_name', 'cfg_scale', 'steps', 'batch_size', 'restore_faces', 'face_restoration_model', 'sd_model_name', 'sd_model_hash', 'sd_vae_name', 'sd_vae_hash', 'seed_resize_from_w', 'seed_resize_from_h', 'denoising_strength', 'extra_generation_params', 'index_of_first_image', 'infotexts', 'styles', 'job_timestamp', 'clip_skip', 'is_using_inpainting_conditioning', 'version'];
// shared.state.dict() in modules/shared_state.py.
const STATE_FIELDS = ['skipped', 'interrupted', 'stopping_generation', 'job', 'job_count', 'job_timestamp', 'job_no', 'sampling_step', 'sampling_steps'];

/** A generation response: images, the request echoed, info as a JSON string with every Processed field. */
function readGeneration(body: Json, what: string): Json & { infotexts: string[] } {
  hasFields(body, ['images', 'parameters', 'info'], what);
  assert.ok(Array.isArray(body.images) && typeof body.info === 'string', what);
  const info = JSON.parse(body.info as string) as Json & { infotexts: string[] };
  hasFields(info, INFO_FIELDS, `${what} info`);
  return info;
}

// test_txt2img.py's simple_txt2img_request (at half its 64x64, the built-in model's own size, to keep the test fast).
const txt2img = {
  batch_size: 1, cfg_scale: 7, denoising_strength: 0, enable_hr: false, eta: 0, firstphase_height: 0, firstphase_width: 0, height: 32, n_iter: 1,
  negative_prompt: '', prompt: 'example prompt', restore_faces: false, s_churn: 0, s_noise: 1, s_tmax: 0, s_tmin: 0, sampler_index: 'Euler a', seed: -1,
  seed_resize_from_h: -1, seed_resize_from_w: -1, steps: 3, styles: [], subseed: -1, subseed_strength: 0, tiling: false, width: 32,
};

const png = (width: number, height: number, pixel: (x: number, y: number) => number[]): string => {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * 3);
  return Buffer.from(encode({ width, height, data, channels: 3 })).toString('base64');
};
const initImage = png(64, 64, (x, y) => [x * 4, y * 4, 128]);
const maskImage = png(64, 64, (x) => (x < 32 ? [255, 255, 255] : [0, 0, 0]));

// test_img2img.py's simple_img2img_request (half size too): note the boolean inpainting_mask_invert.
const img2img = {
  batch_size: 1, cfg_scale: 7, denoising_strength: 0.75, eta: 0, height: 32, include_init_images: false, init_images: [initImage], inpaint_full_res: false,
  inpaint_full_res_padding: 0, inpainting_fill: 0, inpainting_mask_invert: false, mask: null, mask_blur: 4, n_iter: 1, negative_prompt: '', override_settings: {},
  prompt: 'example prompt', resize_mode: 0, restore_faces: false, s_churn: 0, s_noise: 1, s_tmax: 0, s_tmin: 0, sampler_index: 'Euler a', seed: -1,
  seed_resize_from_h: -1, seed_resize_from_w: -1, steps: 3, styles: [], subseed: -1, subseed_strength: 0, tiling: false, width: 32,
};

test("A1111's own API tests pass: txt2img variants, hires fix at denoising 0 with every kind of sampler, img2img and inpainting", async () => {
  const cases: [string, object][] = [
    ['simple', {}],
    ['hrfix', { enable_hr: true }],
    ['hrfix without denoising_strength', { enable_hr: true, denoising_strength: undefined }],
    ['negative prompt', { negative_prompt: 'example negative prompt' }],
    ['complex prompt', { prompt: '((emphasis)), (emphasis1:1.1), [to:1], [from::2], [from:to:0.3], [alt|alt1]' }],
    ['not square', { height: 64 }],
    ['tiling', { tiling: true }],
    ['restore faces', { restore_faces: true }],
    ...['PLMS', 'DDIM', 'UniPC'].flatMap((s): [string, object][] => [[s, { sampler_index: s }], [`${s} hrfix`, { sampler_index: s, enable_hr: true }]]),
    ['n_iter 2', { n_iter: 2 }],
    ['batch 2', { batch_size: 2 }],
  ];
  for (const [name, fields] of cases) {
    const r = await post('txt2img', { ...txt2img, ...fields });
    assert.equal(r.status, 200, `${name}: ${JSON.stringify(r.body)}`);
    const info = readGeneration(r.body, name);
    if ('enable_hr' in fields) {
      assert.match(info.infotexts[0]!, /Denoising strength: 0, Hires upscale: 2, Hires steps: 3, Hires upscaler: Latent, Version/, name);
      assert.equal(info.denoising_strength, 0);
    }
  }
  for (const [name, fields] of [
    ['simple', {}],
    ['masked', { mask: maskImage }],
    ['inverted mask', { mask: maskImage, inpainting_mask_invert: true }],
    ['sd upscale script', { script_name: 'sd upscale', script_args: ['', 8, 'Lanczos', 2.0] }],
  ] as const) {
    const r = await post('img2img', { ...img2img, ...fields });
    assert.equal(r.status, 200, `img2img ${name}: ${JSON.stringify(r.body)}`);
    readGeneration(r.body, `img2img ${name}`);
  }
});

test('denoising strength 0 runs what A1111 runs for it: img2img with each sampler family, 200 and an infotext that says 0', async () => {
  for (const sampler_name of ['Euler a', 'DPM++ 2M', 'Heun', 'DDIM', 'PLMS', 'UniPC']) {
    const r = await post('img2img', { ...img2img, sampler_name, denoising_strength: 0, seed: 4 });
    assert.equal(r.status, 200, `${sampler_name}: ${JSON.stringify(r.body)}`);
    const info = readGeneration(r.body, sampler_name);
    assert.equal(info.denoising_strength, 0);
    assert.match(info.infotexts[0]!, /Denoising strength: 0, Version/);
  }
});

test('options: every A1111 v1.10.1 setting with its default; a client writes one back (test_options_write); types are checked', async () => {
  const opts = await get('options');
  // A sample of shared_options.py's settings and defaults, one or more from each section.
  const defaults: Json = {
    samples_save: true, samples_format: 'png', jpeg_quality: 80, img_max_size_mp: 200, outdir_txt2img_samples: 'outputs/txt2img-images', save_to_dirs: true,
    ESRGAN_tile: 192, realesrgan_enabled_models: ['R-ESRGAN 4x+', 'R-ESRGAN 4x+ Anime6B'], upscaler_for_img2img: null, face_restoration_model: 'CodeFormer',
    auto_launch_browser: 'Local', enable_console_prompts: false, profiling_filename: 'trace.json', api_enable_requests: true, training_write_csv_every: 500,
    sd_checkpoints_limit: 1, emphasis: 'Original', sdxl_crop_top: 0, sdxl_refiner_high_aesthetic_score: 6, sd_vae: 'Automatic', inpainting_mask_weight: 1,
    img2img_background_color: '#ffffff', s_min_uncond: 0, token_merging_ratio: 0, use_old_karras_scheduler_sigmas: false, interrogate_clip_max_length: 48,
    extra_networks_default_multiplier: 1, keyedit_delimiters: '.,\\/!?%^*;:{}=`~() ', send_seed: true, send_size: true, quicksettings_list: ['sd_model_checkpoint'],
    add_model_hash_to_info: true, live_previews_image_format: 'png', show_progress_every_n_steps: 10, eta_ancestral: 1, eta_ddim: 0, uni_pc_order: 3,
    sd_noise_schedule: 'Default', beta_dist_alpha: 0.6, postprocessing_existing_caption_action: 'Ignore', disabled_extensions: [], sd_checkpoint_hash: '',
  };
  for (const [k, v] of Object.entries(defaults)) assert.deepEqual(opts[k], v, k);
  // The explanatory texts are no settings; the ToDo extension's keys are.
  assert.equal('sd_vae_explanation' in opts, false);
  hasFields(opts, ['token_downsampling_factor', 'token_downsampling_max_depth', 'token_downsampling_disable_after'], 'options');
  // What todo-sd acts on reads as it is now.
  assert.equal(opts.sd_model_checkpoint, 'tiny-photo');
  assert.equal(opts.CLIP_stop_at_last_layers, 1);
  assert.ok(Object.keys(opts).length >= 280, String(Object.keys(opts).length));

  const before = opts.send_seed as boolean;
  assert.equal((await post('options', { send_seed: !before })).status, 200);
  assert.equal((await get('options')).send_seed, !before);
  // Writing back everything that was read is accepted too.
  assert.equal((await post('options', { ...opts, send_seed: before })).status, 200);
  assert.deepEqual(await get('options'), opts);

  for (const [key, bad] of [['send_seed', { yes: 1 }], ['jpeg_quality', 'high'], ['hide_samplers', { a: 1 }], ['CLIP_stop_at_last_layers', 13], ['img2img_background_color', 'white']] as const) {
    const r = await post<{ error: string; detail: { loc: string[]; msg: string }[] }>('options', { [key]: bad });
    assert.equal(r.status, 422, key);
    assert.deepEqual(r.body.detail[0]!.loc, ['body', key], key);
    hasFields(r.body, ['error', 'detail', 'body', 'errors'], `${key} error`);
  }
});

test('img2img_background_color: transparent parts of the init picture take the setting (A1111 flattens onto it)', async () => {
  const clear = Buffer.from(encode({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 4), channels: 4 })).toString('base64');
  const one = async (color: string): Promise<string> => {
    const r = await post<{ images: string[] }>('img2img', { ...img2img, init_images: [clear], denoising_strength: 0, sampler_name: 'DDIM', seed: 1, override_settings: { img2img_background_color: color } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.images[0]!;
  };
  assert.notEqual(await one('#ffffff'), await one('#000000'));
});

test('cmd-flags: every A1111 command-line flag, with what todo-sd runs with', async () => {
  const flags = await get('cmd-flags');
  // A sample of modules/cmd_args.py's flags across the file.
  hasFields(flags, ['f', 'data_dir', 'models_dir', 'ckpt_dir', 'vae_dir', 'max_batch_count', 'medvram', 'precision', 'xformers', 'opt_sdp_attention', 'listen', 'port', 'api', 'api_auth', 'api_log', 'nowebui', 'cors_allow_origins', 'tls_keyfile', 'timeout_keep_alive', 'no_prompt_history'], 'cmd-flags');
  assert.ok(Object.keys(flags).length >= 121);
  assert.deepEqual([flags.api, flags.nowebui, flags.ckpt_dir, flags.lora_dir, flags.max_batch_count, flags.precision], [true, false, modelsDir, join(modelsDir, 'Lora'), 16, 'autocast']);
});

test('user errors found inside a job answer 422 in A1111 error shape: a LoRA made for another model, a ToDo factor larger than the token grid', async () => {
  const lora = await post<Json>('txt2img', { ...txt2img, prompt: 'a harbour <lora:sd15-style:0.8>' });
  assert.equal(lora.status, 422, JSON.stringify(lora.body));
  hasFields(lora.body, ['error', 'detail', 'body', 'errors'], 'LoRA error');
  assert.equal(lora.body.error, 'UserError');
  assert.match(lora.body.detail as string, /LoRA sd15-style: module .*attn2_to_k .* does not fit .*: the LoRA was made for another model architecture/);
  const todo = await post<Json>('txt2img', { ...txt2img, width: 8, height: 8, override_settings: { token_downsampling_factor: 8 } });
  assert.equal(todo.status, 422, JSON.stringify(todo.body));
  assert.match(todo.body.detail as string, /ToDo: factor 8 is larger than the \dx\d token grid/);
  // The server goes on serving.
  assert.equal((await post('txt2img', txt2img)).status, 200);
});

/** A PNG whose header claims a size, with next to no pixel data. */
function pngClaiming(width: number, height: number): string {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(Buffer.alloc(width + 1))), pngChunk('IEND', Buffer.alloc(0))]).toString('base64');
}

test('pictures as JPEG, WebP or GIF, with or without a data-URL prefix; damaged, refused and oversized ones are 422 on their field', async () => {
  const rgb = Buffer.alloc(48 * 40 * 3).map((_, i) => (i * 37) % 256);
  const as = (format: 'jpeg' | 'webp' | 'gif'): Promise<Buffer> => sharp(rgb, { raw: { width: 48, height: 40, channels: 3 } }).toFormat(format).toBuffer();
  const jpeg = await as('jpeg');
  for (const [name, init] of [
    ['jpeg data URL', `data:image/jpeg;base64,${jpeg.toString('base64')}`],
    ['webp', (await as('webp')).toString('base64')],
    ['gif data URL', `data:image/gif;base64,${(await as('gif')).toString('base64')}`],
  ] as const) {
    const r = await post<{ images: string[] }>('img2img', { ...img2img, init_images: [init], width: 48, height: 40, denoising_strength: 0.5 });
    assert.equal(r.status, 200, `${name}: ${JSON.stringify(r.body)}`);
    assert.match(readPngText(Buffer.from(r.body.images[0]!, 'base64')).parameters!, /Size: 48x40/);
  }
  const tiff = (await sharp(rgb, { raw: { width: 48, height: 40, channels: 3 } }).tiff().toBuffer()).toString('base64');
  for (const [name, field, payload, msg] of [
    ['truncated JPEG', 'init_images.0', { init_images: [jpeg.subarray(0, jpeg.length - 100).toString('base64')] }, /init_images\.0 is a damaged JPEG file/],
    ['not an image', 'init_images.0', { init_images: [Buffer.from('plain text, no picture').toString('base64')] }, /init_images\.0 is not a readable image .*give a PNG, JPEG or WebP file/],
    ['TIFF', 'init_images.0', { init_images: [tiff] }, /init_images\.0 is a TIFF image; todo-sd reads PNG, JPEG, WebP, GIF, AVIF/],
    ['huge', 'init_images.0', { init_images: [pngClaiming(9000, 9000)] }, /init_images\.0 is 9000x9000 pixels, more than the 67,108,864 allowed/],
    ['bad mask', 'mask', { mask: Buffer.from('nope').toString('base64') }, /mask is not a readable image/],
  ] as const) {
    const r = await post<{ detail: { loc: (string | number)[]; msg: string }[] }>('img2img', { ...img2img, ...payload });
    assert.equal(r.status, 422, name);
    assert.deepEqual(r.body.detail[0]!.loc, ['body', ...field.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p))], name);
    assert.match(r.body.detail[0]!.msg, msg, name);
  }
  const extras = await post<Json>('extra-single-image', { image: jpeg.toString('base64').slice(0, 200) });
  assert.equal(extras.status, 422);
});

test('every other endpoint, read field by field as its A1111 response model documents', async () => {
  // test_extras.py's upscaling payload; png-info on a picture with parameters.
  const up = await post<Json>('extra-single-image', {
    resize_mode: 0, show_extras_results: true, gfpgan_visibility: 0, codeformer_visibility: 0, codeformer_weight: 0, upscaling_resize: 2, upscaling_resize_w: 128,
    upscaling_resize_h: 128, upscaling_crop: true, upscaler_1: 'Lanczos', upscaler_2: 'None', extras_upscaler_2_visibility: 0, image: initImage,
  });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  hasFields(up.body, ['image', 'html_info'], 'extra-single-image');
  const made = await post<{ images: string[] }>('txt2img', { ...txt2img, seed: 3 });
  const info = await post<Json>('png-info', { image: made.body.images[0]! });
  hasFields(info.body, ['info', 'items', 'parameters'], 'png-info');
  assert.equal((info.body.parameters as Json).Seed, '3');
  // A1111 with samples_format jpg / webp puts the parameters in EXIF UserComment; png-info reads them there too.
  const jpeg = await sharp(Buffer.from(made.body.images[0]!, 'base64')).jpeg().withExif({ IFD2: { UserComment: 'a fox\nSteps: 3, Seed: 7, Size: 32x32' } }).toBuffer();
  const fromJpeg = await post<Json>('png-info', { image: `data:image/jpeg;base64,${jpeg.toString('base64')}` });
  assert.equal(fromJpeg.body.info, 'a fox\nSteps: 3, Seed: 7, Size: 32x32');
  assert.equal((fromJpeg.body.parameters as Json).Seed, '7');
  assert.equal((await post('png-info', { image: Buffer.from('no picture').toString('base64') })).status, 422);

  const progress = await get('progress');
  hasFields(progress, ['progress', 'eta_relative', 'state', 'current_image', 'textinfo'], 'progress');
  hasFields(progress.state, STATE_FIELDS, 'progress state');

  const lists: [string, readonly string[]][] = [
    ['samplers', ['name', 'aliases', 'options']],
    ['schedulers', ['name', 'label', 'aliases', 'default_rho', 'need_inner_model']],
    ['upscalers', ['name', 'model_name', 'model_path', 'model_url', 'scale']],
    ['latent-upscale-modes', ['name']],
    ['sd-models', ['title', 'model_name', 'hash', 'sha256', 'filename', 'config']],
    ['loras', ['name', 'alias', 'path', 'metadata']],
  ];
  for (const [path, fields] of lists) {
    const items = await get<unknown[]>(path);
    assert.ok(items.length > 0, path);
    items.forEach((item, i) => hasFields(item, fields, `${path}[${i}]`));
  }
  // Lists of what todo-sd does not have: empty, as A1111 with none installed.
  for (const path of ['sd-vae', 'hypernetworks', 'face-restorers', 'realesrgan-models', 'prompt-styles', 'script-info', 'extensions']) assert.deepEqual(await get(path), [], path);
  hasFields(await get('embeddings'), ['loaded', 'skipped'], 'embeddings');
  hasFields(await get('scripts'), ['txt2img', 'img2img'], 'scripts');
  const memory = await get<{ ram: Json; cuda: Json }>('memory');
  hasFields(memory.ram, ['free', 'used', 'total'], 'memory.ram');
  assert.ok((memory.ram.used as number) > 0 && (memory.ram.total as number) > (memory.ram.used as number));
  for (const path of ['interrupt', 'skip']) assert.deepEqual(await post(path, {}), { status: 200, body: {} }, path);
  for (const path of ['refresh-checkpoints', 'refresh-loras', 'refresh-embeddings', 'refresh-vae']) assert.equal((await post(path, {})).status, 200, path);
});
