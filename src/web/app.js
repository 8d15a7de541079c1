// The todo-sd page. It speaks the A1111 API (/sdapi/v1) as any client does, and builds itself
// from what the server offers: models, samplers, schedules, upscalers and LoRAs from A1111's
// lists, the speed methods and their fields from /todo-sd/v1/speed-methods, each model's native
// size from /todo-sd/v1/models.
import { ApiError, ConnectionLost, sdapi, todoApi } from './api.js';
import { $, checkNumbers, clearErrors, num, setError, showErrors } from './fields.js';
import { Gallery } from './gallery.js';
import { base64, imageFromFile, imagePng, isPng, loadImage } from './images.js';
import { MaskPainter } from './mask.js';
import { measuredText, SpeedPanel } from './speed.js';

const NUMBER_FIELDS = ['steps', 'cfg_scale', 'width', 'height', 'seed', 'n_iter', 'batch_size', 'hr_scale', 'hr_second_pass_steps', 'hr_denoising_strength', 'denoising_strength', 'mask_blur'];

const state = {
  tab: 'txt2img',
  models: new Map(),
  busy: false,
  /** The starting image of img2img and inpainting: { png (base64), width, height, name }. */
  init: undefined,
  lastSeed: undefined,
};

const painter = new MaskPainter($('mask_canvas'));
const speed = new SpeedPanel(() => askPrediction());

// ---- model and size ---------------------------------------------------------------------------

function nativeSize(title = $('sd_model_checkpoint').value) {
  const m = state.models.get(title);
  return m && !m.error ? [m.native_width, m.native_height] : undefined;
}

function setSize(w, h) {
  $('width').value = String(w);
  $('height').value = String(h);
}

function describeModel() {
  const m = state.models.get($('sd_model_checkpoint').value);
  $('model_note').textContent = !m ? '' : m.error ? `cannot read this model: ${m.error}` : `${m.family === 'sdxl' ? 'SDXL' : 'SD 1.x / 2.x'} · trained at ${m.native_width}x${m.native_height}`;
}

function onModelChange(previous) {
  const before = nativeSize(previous);
  const after = nativeSize();
  // A size the user left at the old model's native one follows the new model.
  if (after && (!before || (num('width') === before[0] && num('height') === before[1]))) setSize(...after);
  describeModel();
  askPrediction();
}

// ---- tabs -------------------------------------------------------------------------------------

function showTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll('[role=tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === tab));
  for (const el of document.querySelectorAll('[data-tabs]')) el.hidden = !el.dataset.tabs.split(' ').includes(tab);
  $('mask_canvas').hidden = tab !== 'inpaint';
  askPrediction();
}

// ---- the starting image and the mask ----------------------------------------------------------

/** Makes `img` the starting image; the size follows it (multiples of 8, within the limits). */
function setInitImage(img, name) {
  const [w, h] = [img.naturalWidth, img.naturalHeight];
  state.init = { png: imagePng(img), width: w, height: h, name };
  $('init_preview').src = `data:image/png;base64,${state.init.png}`;
  $('paint_stage').hidden = false;
  // At most 60% of the window's height, whatever the image's shape.
  $('paint_stage').style.setProperty('--aspect', String(w / h));
  $('image_empty').hidden = true;
  $('image_zone').classList.add('has-image');
  $('image_remove').disabled = false;
  painter.reset(w, h);
  const max = Number($('width').max);
  const fit = Math.min(1, max / Math.max(w, h));
  const [tw, th] = [w, h].map((v) => Math.max(8, Math.floor((v * fit) / 8) * 8));
  setSize(tw, th);
  $('image_info').textContent = `${name}, ${w}x${h}${tw !== w || th !== h ? ` → generating at ${tw}x${th}` : ''}`;
  clearFieldError('init_images');
  askPrediction();
}

function removeInitImage() {
  state.init = undefined;
  $('paint_stage').hidden = true;
  $('image_empty').hidden = false;
  $('image_zone').classList.remove('has-image');
  $('image_remove').disabled = true;
  $('image_info').textContent = '';
}

async function initImageFromFile(file) {
  try {
    setInitImage(await imageFromFile(file), file.name);
  } catch (e) {
    setError('init_images', `${e.message}; choose a PNG, JPEG or WebP picture`);
  }
}

function clearFieldError(field) {
  const w = document.querySelector(`[data-field="${field}"]`);
  w?.classList.remove('invalid');
  const box = w?.querySelector('.error');
  if (box) box.textContent = '';
}

async function loadMask(file) {
  clearFieldError('mask');
  if (!state.init) return setError('mask', 'choose the image first, then its mask');
  try {
    const note = painter.load(await imageFromFile(file), file.name);
    $('image_info').textContent = note || `mask from ${file.name}`;
  } catch (e) {
    setError('mask', e.message);
  }
}

// ---- parameters from a PNG --------------------------------------------------------------------

/** Fills the form from a PNG's A1111 parameters (read by the server's png-info). */
async function loadParameters(png, name) {
  clearErrors();
  let p;
  try {
    ({ parameters: p } = await sdapi('png-info', { image: png }));
  } catch (e) {
    $('error').textContent = `${name}: ${e.message}`;
    return;
  }
  if (!p.Prompt && !p.Steps) {
    $('error').textContent = `${name} carries no generation parameters (it was not made by todo-sd or AUTOMATIC1111, or they were stripped)`;
    return;
  }
  const set = (id, v) => v !== undefined && v !== '' && ($(id).value = String(v));
  const pick = (id, v) => v !== undefined && [...$(id).options].some((o) => o.value === v) && ($(id).value = v);
  set('prompt', p.Prompt);
  set('negative_prompt', p['Negative prompt'] ?? '');
  set('steps', p.Steps);
  set('cfg_scale', p['CFG scale']);
  set('seed', p.Seed);
  set('width', p['Size-1']);
  set('height', p['Size-2']);
  pick('sampler_name', p.Sampler);
  $('scheduler').value = [...$('scheduler').options].some((o) => o.value === p['Schedule type']) ? p['Schedule type'] : 'Automatic';
  const model = [...state.models.keys()].find((t) => t === p.Model || state.models.get(t).model_name === p.Model);
  if (model && model !== $('sd_model_checkpoint').value) {
    const previous = $('sd_model_checkpoint').value;
    $('sd_model_checkpoint').value = model;
    onModelChange(previous);
  }
  $('enable_hr').checked = p['Hires upscale'] !== undefined;
  if (p['Hires upscale'] !== undefined) {
    set('hr_scale', p['Hires upscale']);
    pick('hr_upscaler', p['Hires upscaler']);
    set('hr_second_pass_steps', p['Hires steps'] ?? 0);
    set('hr_denoising_strength', p['Denoising strength']);
  } else {
    set('denoising_strength', p['Denoising strength']);
  }
  hiresVisibility();
  // Each speed field from its infotext keys; absent means the method was off.
  for (const m of speed.methods) {
    for (const f of m.fields) {
      const key = f.infotext.find((k) => p[k] !== undefined);
      speed.set(f.key, key === undefined ? f.default : p[key]);
    }
  }
  askPrediction();
}

async function droppedFile(file, onImageZone) {
  if (onImageZone) return initImageFromFile(file);
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (!isPng(bytes)) {
    clearErrors();
    $('error').textContent = `${file.name} is not a PNG${file.type ? ` (${file.type})` : ''}: drop a PNG made by todo-sd or AUTOMATIC1111 to load its parameters, or drop a picture on the Image box of Image to image`;
    return;
  }
  await loadParameters(base64(bytes), file.name);
}

// ---- LoRAs ------------------------------------------------------------------------------------

function insertLora() {
  const name = $('lora_name').value;
  if (!name) return;
  const w = Number($('lora_weight').value);
  const tag = `<lora:${name}:${Number.isFinite(w) ? w : 1}>`;
  const area = $('prompt');
  const at = area.selectionStart ?? area.value.length;
  const before = area.value.slice(0, at);
  const after = area.value.slice(area.selectionEnd ?? at);
  const pad = before && !/\s$/.test(before) ? ' ' : '';
  area.value = `${before}${pad}${tag}${after}`;
  const caret = before.length + pad.length + tag.length;
  area.focus();
  area.setSelectionRange(caret, caret);
}

// ---- generation -------------------------------------------------------------------------------

function hiresOn() {
  return state.tab === 'txt2img' && $('enable_hr').checked;
}

function hiresVisibility() {
  $('hires_fields').hidden = !$('enable_hr').checked;
}

function askPrediction() {
  speed.predict(() => ({
    width: $('width').value,
    height: $('height').value,
    steps: $('steps').value,
    model: $('sd_model_checkpoint').value,
    hrScale: hiresOn() ? $('hr_scale').value : undefined,
    hrSteps: hiresOn() ? $('hr_second_pass_steps').value : undefined,
  }));
}

function payload() {
  const body = {
    prompt: $('prompt').value,
    negative_prompt: $('negative_prompt').value,
    sampler_name: $('sampler_name').value,
    scheduler: $('scheduler').value,
    steps: num('steps'),
    cfg_scale: num('cfg_scale'),
    width: num('width'),
    height: num('height'),
    seed: num('seed'),
    n_iter: num('n_iter'),
    batch_size: num('batch_size'),
    override_settings: { sd_model_checkpoint: $('sd_model_checkpoint').value, show_progress_type: $('show_progress_type').value, ...speed.settings() },
  };
  if (state.tab === 'txt2img' && hiresOn()) {
    Object.assign(body, {
      enable_hr: true,
      hr_upscaler: $('hr_upscaler').value,
      hr_scale: num('hr_scale'),
      hr_second_pass_steps: num('hr_second_pass_steps'),
      denoising_strength: num('hr_denoising_strength'),
    });
  }
  if (state.tab !== 'txt2img') {
    Object.assign(body, { init_images: [state.init.png], denoising_strength: num('denoising_strength'), resize_mode: num('resize_mode') });
  }
  if (state.tab === 'inpaint') {
    Object.assign(body, {
      mask: painter.png(),
      mask_blur: num('mask_blur'),
      inpainting_fill: num('inpainting_fill'),
      inpainting_mask_invert: $('inpainting_mask_invert').checked ? 1 : 0,
    });
  }
  return body;
}

/** What must hold before anything is sent: numbers in range, an image to start from, a painted mask. */
function checkForm() {
  const errors = checkNumbers([...NUMBER_FIELDS, ...speed.numberInputs().map((i) => i.id)]);
  if (state.tab !== 'txt2img' && !state.init) errors.init_images = ['choose or drop the image to start from'];
  if (state.tab === 'inpaint' && state.init && painter.isEmpty()) errors.mask = ['paint the area to repaint (or load a mask)'];
  return errors;
}

async function pollProgress(isDone) {
  let misses = 0;
  while (!isDone()) {
    try {
      const p = await sdapi('progress');
      misses = 0;
      if (isDone()) break;
      const s = p.state;
      if (p.phase) {
        $('progress_text').textContent = `${p.phase.label} · ${p.phase.seconds.toFixed(1)} s`;
      } else if (s.sampling_steps > 0) {
        $('progress').value = p.progress;
        const images = s.job_count > 1 ? `image ${s.job_no + 1}/${s.job_count} · ` : '';
        const eta = p.eta_relative > 0 ? ` · ETA ${p.eta_relative.toFixed(0)} s` : '';
        $('progress_text').textContent = `${images}step ${s.sampling_step}/${s.sampling_steps}${eta}`;
      }
      if (p.current_image) {
        $('preview').src = `data:image/png;base64,${p.current_image}`;
        $('preview').hidden = false;
        $('latest').hidden = true;
        $('viewer_empty').hidden = true;
      }
    } catch {
      if (++misses >= 3) $('progress_text').textContent = 'no answer from the server…';
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function showImage(item) {
  $('latest').src = `data:image/png;base64,${item.png}`;
  $('latest').hidden = false;
  $('preview').hidden = true;
  $('viewer_empty').hidden = true;
  $('latest_info').textContent = `${item.parameters}\n\nSpeed: ${measuredText(item.speed)}`;
}

const gallery = new Gallery({
  show: showImage,
  seed: (item) => {
    $('seed').value = String(item.seed);
    $('seed').focus();
  },
  parameters: (item) => loadParameters(item.png, `seed ${item.seed}`),
  img2img: (item) => startFrom(item, 'img2img'),
  inpaint: (item) => startFrom(item, 'inpaint'),
});

async function startFrom(item, tab) {
  showTab(tab);
  setInitImage(await loadImage(`data:image/png;base64,${item.png}`), `gallery image (seed ${item.seed})`);
  $('image_zone').scrollIntoView({ block: 'nearest' });
}

function setBusy(busy) {
  state.busy = busy;
  $('generate').disabled = busy;
  $('interrupt').disabled = !busy;
  $('skip').disabled = !busy;
}

async function generate(event) {
  event?.preventDefault();
  if (state.busy) return;
  clearErrors();
  const errors = checkForm();
  if (Object.keys(errors).length) {
    showErrors(errors);
    return;
  }
  const body = payload();
  const kind = state.tab;
  setBusy(true);
  $('progress').value = 0;
  $('progress_text').textContent = 'waiting for the server…';
  const started = performance.now();
  let done = false;
  const polling = pollProgress(() => done);
  try {
    const r = await sdapi(kind === 'txt2img' ? 'txt2img' : 'img2img', body);
    const info = JSON.parse(r.info);
    const last = info.speed?.passes?.[info.speed.passes.length - 1];
    r.images.forEach((png, i) =>
      gallery.add({ png, seed: info.all_seeds[i], parameters: info.infotexts[i], width: last?.width ?? body.width, height: last?.height ?? body.height, speed: info.speed, kind }),
    );
    if (r.images.length) {
      showImage(gallery.items[gallery.items.length - 1]);
      state.lastSeed = info.all_seeds[0];
      $('seed_last').disabled = false;
    }
    speed.showMeasured(info.speed);
    $('progress').value = 1;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    $('progress_text').textContent = info.interrupted ? `interrupted: ${r.images.length} image(s) kept` : `done in ${secs} s`;
  } catch (e) {
    $('progress_text').textContent = 'failed';
    if (e instanceof ConnectionLost) {
      $('error').textContent = `The server stopped answering (${e.message}): todo-sd serve was stopped or restarted, or the network went away. Your settings are kept: start the server again and press Generate.`;
    } else if (e instanceof ApiError && Object.keys(e.fields).length) {
      // The API names the hires fix's strength as img2img's.
      showErrors(e.fields, kind === 'txt2img' ? { denoising_strength: 'hr_denoising_strength' } : {});
    } else {
      $('error').textContent = e.message;
    }
  } finally {
    done = true;
    await polling;
    setBusy(false);
  }
}

// ---- start ------------------------------------------------------------------------------------

function fillSelect(id, items, empty) {
  const select = $(id);
  select.replaceChildren(...items.map(([value, label]) => new Option(label, value)));
  if (!items.length && empty) {
    select.append(new Option(empty, ''));
    select.disabled = true;
  }
}

function wire() {
  $('form').addEventListener('submit', generate);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) generate(e);
  });
  for (const b of document.querySelectorAll('[role=tab]')) b.addEventListener('click', () => showTab(b.dataset.tab));
  $('interrupt').addEventListener('click', () => sdapi('interrupt', {}).catch(() => {}));
  $('skip').addEventListener('click', () => sdapi('skip', {}).catch(() => {}));
  let model = $('sd_model_checkpoint').value;
  $('sd_model_checkpoint').addEventListener('change', () => {
    onModelChange(model);
    model = $('sd_model_checkpoint').value;
  });
  $('native_size').addEventListener('click', () => {
    const n = nativeSize();
    if (n) setSize(...n);
    askPrediction();
  });
  $('seed_random').addEventListener('click', () => ($('seed').value = '-1'));
  $('seed_last').addEventListener('click', () => state.lastSeed !== undefined && ($('seed').value = String(state.lastSeed)));
  // DeepCache's prediction follows the schedule: the steps count too.
  for (const id of ['width', 'height', 'steps', 'hr_scale', 'hr_second_pass_steps']) $(id).addEventListener('input', askPrediction);
  $('enable_hr').addEventListener('change', () => {
    hiresVisibility();
    askPrediction();
  });
  $('lora_insert').addEventListener('click', insertLora);

  const zone = $('image_zone');
  const choose = () => $('image_file').click();
  zone.addEventListener('click', () => !state.init && choose());
  zone.addEventListener('keydown', (e) => (e.key === 'Enter' || e.key === ' ') && !state.init && choose());
  $('image_choose').addEventListener('click', choose);
  $('image_remove').addEventListener('click', removeInitImage);
  $('image_file').addEventListener('change', (e) => e.target.files[0] && initImageFromFile(e.target.files[0]));
  $('brush_size').addEventListener('input', () => {
    painter.brush = num('brush_size');
    $('brush_size_out').textContent = $('brush_size').value;
  });
  $('mask_erase').addEventListener('change', () => (painter.erase = $('mask_erase').checked));
  $('mask_clear').addEventListener('click', () => painter.clear());
  $('mask_load').addEventListener('click', () => $('mask_file').click());
  $('mask_file').addEventListener('change', (e) => e.target.files[0] && loadMask(e.target.files[0]));
  painter.onChange = () => clearFieldError('mask');

  // A PNG dropped anywhere loads its parameters; a picture dropped on the Image box starts img2img.
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', (e) => e.relatedTarget === null && document.body.classList.remove('dragging'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    document.body.classList.remove('dragging');
    const file = e.dataTransfer?.files[0];
    if (file) droppedFile(file, zone.contains(e.target) && !zone.closest('[hidden]'));
  });
}

async function init() {
  const [models, facts, options, samplers, schedulers, upscalers, latentModes, loras, methods, flags] = await Promise.all([
    sdapi('sd-models'),
    todoApi('models'),
    sdapi('options'),
    sdapi('samplers'),
    sdapi('schedulers'),
    sdapi('upscalers'),
    sdapi('latent-upscale-modes'),
    sdapi('loras'),
    todoApi('speed-methods'),
    sdapi('cmd-flags'),
  ]);
  for (const m of models) state.models.set(m.title, { ...m, ...facts.find((f) => f.title === m.title) });
  fillSelect('sd_model_checkpoint', models.map((m) => [m.title, m.model_name]));
  $('sd_model_checkpoint').value = options.sd_model_checkpoint;
  fillSelect('sampler_name', samplers.map((s) => [s.name, s.name]));
  $('sampler_name').value = samplers.some((s) => s.name === 'Euler a') ? 'Euler a' : samplers[0].name;
  // By label, as A1111's infotext names the schedule ("Schedule type: SGM Uniform").
  fillSelect('scheduler', schedulers.map((s) => [s.label, s.label]));
  if ([...$('show_progress_type').options].some((o) => o.value === options.show_progress_type)) $('show_progress_type').value = options.show_progress_type;
  const hr = [...latentModes.map((m) => m.name), ...upscalers.map((u) => u.name).filter((n) => n !== 'None')];
  fillSelect('hr_upscaler', hr.map((n) => [n, n]));
  fillSelect('lora_name', loras.map((l) => [l.name, l.alias || l.name]), flags.lora_dir ? `none in ${flags.lora_dir}` : 'none: serve --models-dir with a Lora/ folder');
  $('lora_insert').disabled = !loras.length;
  speed.render(methods.methods, options);
  const n = nativeSize();
  if (n) setSize(...n);
  describeModel();
  wire();
  showTab('txt2img');
  hiresVisibility();
  document.body.dataset.ready = 'true';
}

init().catch((e) => {
  $('error').textContent = `could not start the page: ${e instanceof ConnectionLost ? 'the server does not answer; is todo-sd serve running?' : e.message}`;
});
