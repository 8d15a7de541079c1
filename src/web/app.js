// The todo-sd page: talks to the same A1111 API as any client (/sdapi/v1), plus
// /todo-sd/v1/speedup for the FLOP-ideal speed-up of the chosen ToDo settings.
const $ = (id) => document.getElementById(id);
const api = '/sdapi/v1';

async function call(path, body) {
  const res = await fetch(path, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const data = await res.json();
  if (!res.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join('\n') : data.detail || res.statusText;
    throw new Error(detail);
  }
  return data;
}

const num = (id) => Number($(id).value);

function todoSettings() {
  return {
    token_downsampling_factor: num('todo_factor'),
    token_downsampling_max_depth: num('todo_depth'),
    token_downsampling_disable_after: num('todo_disable_after'),
  };
}

let speedupTimer;
function updateSpeedup() {
  clearTimeout(speedupTimer);
  speedupTimer = setTimeout(async () => {
    const t = todoSettings();
    if (t.token_downsampling_factor <= 1) {
      $('speedup').textContent = 'off: dense attention';
      return;
    }
    const q = new URLSearchParams({ width: $('width').value, height: $('height').value, factor: t.token_downsampling_factor, max_depth: t.token_downsampling_max_depth, disable_after: t.token_downsampling_disable_after });
    try {
      const s = await call(`/todo-sd/v1/speedup?${q}`);
      $('speedup').textContent = `FLOP-ideal speed-up at ${s.width}x${s.height}: ${s.flopIdealSpeedup.toFixed(2)}x (U-Net ${s.denseGflops.toPrecision(3)} → ${s.todoGflops.toPrecision(3)} GFLOP per step)`;
    } catch (e) {
      $('speedup').textContent = e.message;
    }
  }, 150);
}

async function pollProgress(isDone) {
  while (!isDone()) {
    try {
      const p = await call(`${api}/progress`);
      if (p.state.sampling_steps > 0) {
        $('progress').value = p.progress;
        $('progress_text').textContent = `image ${p.state.job_no + 1}, step ${p.state.sampling_step}/${p.state.sampling_steps}`;
      }
      if (p.current_image) {
        $('preview').src = `data:image/png;base64,${p.current_image}`;
        $('preview').hidden = false;
      }
    } catch {
      // A missed poll is retried on the next tick.
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function addToGallery(png, seed, parameters) {
  const url = `data:image/png;base64,${png}`;
  const fig = document.createElement('figure');
  const img = document.createElement('img');
  img.src = url;
  img.alt = parameters.split('\n')[0];
  img.title = parameters;
  const link = document.createElement('a');
  link.href = url;
  link.download = `todo-sd-${seed}.png`;
  link.textContent = `download (seed ${seed})`;
  fig.append(img, link);
  $('gallery').prepend(fig);
}

async function generate(event) {
  event.preventDefault();
  $('error').textContent = '';
  $('generate').disabled = true;
  $('interrupt').disabled = false;
  $('progress').value = 0;
  $('progress_text').textContent = 'waiting…';
  let done = false;
  const polling = pollProgress(() => done);
  try {
    const r = await call(`${api}/txt2img`, {
      prompt: $('prompt').value,
      negative_prompt: $('negative_prompt').value,
      width: num('width'),
      height: num('height'),
      steps: num('steps'),
      sampler_name: $('sampler_name').value,
      scheduler: $('scheduler').value,
      seed: num('seed'),
      cfg_scale: num('cfg_scale'),
      override_settings: { ...todoSettings(), show_progress_type: $('show_progress_type').value },
    });
    const info = JSON.parse(r.info);
    r.images.forEach((png, i) => addToGallery(png, info.all_seeds[i], info.infotexts[i]));
    $('progress').value = 1;
    $('progress_text').textContent = info.interrupted ? 'interrupted' : 'done';
  } catch (e) {
    $('error').textContent = e.message;
    $('progress_text').textContent = '';
  } finally {
    done = true;
    await polling;
    $('generate').disabled = false;
    $('interrupt').disabled = true;
  }
}

/** Fills the form from a PNG's A1111 parameters (read by the server's png-info). */
async function loadParameters(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  try {
    const { parameters: p } = await call(`${api}/png-info`, { image: btoa(binary) });
    if (!p.Prompt && !p.Steps) throw new Error(`${file.name} carries no generation parameters`);
    const set = (id, v) => v !== undefined && v !== '' && ($(id).value = v);
    set('prompt', p.Prompt);
    set('negative_prompt', p['Negative prompt']);
    set('steps', p.Steps);
    set('cfg_scale', p['CFG scale']);
    set('seed', p.Seed);
    set('width', p['Size-1']);
    set('height', p['Size-2']);
    if ([...$('sampler_name').options].some((o) => o.value === p.Sampler)) $('sampler_name').value = p.Sampler;
    $('scheduler').value = [...$('scheduler').options].some((o) => o.value === p['Schedule type']) ? p['Schedule type'] : 'Automatic';
    set('todo_factor', String(Number(p['ToDo factor'] ?? 1)));
    set('todo_depth', p['ToDo max depth'] ?? (p['ToDo level 2 factor'] ? '2' : '1'));
    set('todo_disable_after', String(Number(p['ToDo disable after'] ?? p['ToDo stop at'] ?? 1)));
    $('error').textContent = '';
    updateSpeedup();
  } catch (e) {
    $('error').textContent = e.message;
  }
}

async function init() {
  const [samplers, schedulers, options] = await Promise.all([call(`${api}/samplers`), call(`${api}/schedulers`), call(`${api}/options`)]);
  for (const s of samplers) $('sampler_name').append(new Option(s.name, s.name));
  for (const s of schedulers) $('scheduler').append(new Option(s.label, s.label));
  $('model').textContent = `model: ${options.sd_model_checkpoint}`;
  $('todo_factor').value = String(options.token_downsampling_factor);
  $('todo_depth').value = String(options.token_downsampling_max_depth);
  $('todo_disable_after').value = String(options.token_downsampling_disable_after);
  if ([...$('show_progress_type').options].some((o) => o.value === options.show_progress_type)) $('show_progress_type').value = options.show_progress_type;
  $('form').addEventListener('submit', generate);
  $('interrupt').addEventListener('click', () => call(`${api}/interrupt`, {}));
  for (const id of ['width', 'height', 'todo_factor', 'todo_depth', 'todo_disable_after']) $(id).addEventListener('input', updateSpeedup);
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    document.body.classList.remove('dragging');
    const file = e.dataTransfer.files[0];
    if (file) loadParameters(file);
  });
  updateSpeedup();
}

init().catch((e) => ($('error').textContent = `could not reach the server: ${e.message}`));
