// The speed methods as the server describes them (/todo-sd/v1/speed-methods): one fieldset per
// method, built from its fields, with the speed-up its FLOP count predicts and, after each
// image, the one measured against a dense image of the same size.
import { todoApi } from './api.js';
import { $, showErrors } from './fields.js';

const x = (v) => `${v.toFixed(2)}x`;
const size = (p) => `${p.width}x${p.height}`;

/** One line on a job's measured speed (the server's `info.speed`), honest about what was compared. */
export function measuredText(speed) {
  const passes = (speed?.passes ?? []).filter((p) => p.stepMs !== undefined);
  if (!passes.length) return 'not timed: every step came right after loading or building a graph; generate again to time it';
  return passes
    .map((p) => {
      const where = `${passes.length > 1 ? `pass ${p.pass}, ` : ''}${size(p)}`;
      const ms = `${Math.round(p.stepMs)} ms/step`;
      if (!speed.methods.length) return `${where}: dense, ${ms} (the baseline for this size)`;
      if (p.measuredSpeedup === null) return `${where}: ${ms}; no dense image of this size yet to compare with (FLOP-ideal ${x(p.flopIdealSpeedup)})`;
      // Faster than the FLOP ratio allows: the two timings saw different machine load.
      const noisy = p.measuredSpeedup > 1.1 * p.flopIdealSpeedup ? '; above the FLOP ratio, so partly timing noise' : '';
      return `${where}: measured ${x(p.measuredSpeedup)} (${ms} vs dense ${Math.round(p.denseStepMs)}), FLOP-ideal ${x(p.flopIdealSpeedup)}${noisy}`;
    })
    .join('; ');
}

/** The last pass of a job with a speed method that has a measured speed-up, if any. */
export function measuredPass(speed) {
  if (!speed?.methods.length) return undefined;
  return (speed.passes ?? []).filter((p) => typeof p.measuredSpeedup === 'number').pop();
}

/** The short badge of a gallery image: the measured speed-up of its last pass, if any. */
export function measuredBadge(speed) {
  const p = measuredPass(speed);
  return p ? `${x(p.measuredSpeedup)} measured` : '';
}

export class SpeedPanel {
  constructor(onChange) {
    this.methods = [];
    this.onChange = onChange;
    this.timer = undefined;
    this.asked = 0;
  }

  /** Builds the fieldsets; the values start at the server's settings (`options`). */
  render(methods, options) {
    this.methods = methods;
    const box = $('speed_methods');
    box.replaceChildren();
    for (const m of methods) {
      const set = document.createElement('fieldset');
      set.className = 'speed-method';
      set.dataset.method = m.id;
      set.innerHTML = `<legend>${m.label} <span class="state"></span></legend><p class="help muted"></p><div class="row wrap"></div>`;
      set.querySelector('.help').textContent = m.help;
      const row = set.querySelector('.row');
      for (const f of m.fields) row.append(this.field(f, options[f.key] ?? f.default));
      box.append(set);
    }
    this.refreshStates();
  }

  field(f, value) {
    const label = document.createElement('label');
    label.className = 'field';
    label.dataset.field = f.key;
    label.title = f.help;
    const caption = document.createElement('span');
    caption.textContent = f.label;
    let input;
    if (f.choices) {
      input = document.createElement('select');
      for (const c of f.choices) input.append(new Option(c.label, String(c.value)));
    } else {
      input = document.createElement('input');
      input.type = 'number';
      Object.assign(input, { min: f.min, max: f.max, step: f.step });
    }
    input.id = `speed-${f.key}`;
    input.dataset.key = f.key;
    input.dataset.type = f.type;
    input.value = String(value);
    input.addEventListener('input', () => {
      this.refreshStates();
      this.onChange();
    });
    const error = document.createElement('small');
    error.className = 'error';
    label.append(caption, input, error);
    return label;
  }

  inputs() {
    return [...document.querySelectorAll('#speed_methods [data-key]')];
  }

  /** The inputs that take numbers (not the text fields' lists). */
  numberInputs() {
    return this.inputs().filter((i) => i.dataset.type !== 'text');
  }

  /** The values as settings keys (override_settings): numbers, or words for text fields (DeepCache's passes). */
  settings() {
    return Object.fromEntries(this.inputs().map((i) => [i.dataset.key, i.dataset.type === 'text' ? i.value : Number(i.value)]));
  }

  /** Sets a field by settings key; a value a list does not offer is added to it. */
  set(key, value) {
    const input = $(`speed-${key}`);
    const text = input?.dataset.type === 'text';
    if (!input || value === undefined || (!text && Number.isNaN(Number(value)))) return;
    const v = text ? String(value) : String(Number(value));
    if (input.tagName === 'SELECT' && ![...input.options].some((o) => o.value === v)) input.append(new Option(v, v));
    input.value = v;
    this.refreshStates();
  }

  refreshStates() {
    for (const m of this.methods) {
      const first = m.fields[0];
      const on = String(this.settings()[first.key]) !== String(first.off);
      const set = document.querySelector(`.speed-method[data-method="${m.id}"]`);
      set.classList.toggle('on', on);
      set.querySelector('.state').textContent = on ? 'on' : 'off';
    }
  }

  /** Asks the server for the FLOP-ideal speed-up of these settings at this size (debounced; the latest answer wins). */
  predict(question) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.ask(question()), 150);
  }

  async ask(q) {
    const n = ++this.asked;
    const params = new URLSearchParams({ width: q.width, height: q.height, steps: q.steps, model: q.model, ...this.settings() });
    if (q.hrScale) params.set('hr_scale', q.hrScale);
    if (q.hrScale && Number(q.hrSteps) > 0) params.set('hr_second_pass_steps', q.hrSteps);
    const line = $('speed_predicted');
    for (const i of this.inputs()) i.closest('.field').classList.remove('invalid');
    for (const e of document.querySelectorAll('#speed .error')) e.textContent = '';
    try {
      const r = await todoApi(`speedup?${params}`);
      if (n !== this.asked) return;
      if (!r.methods.length) {
        line.textContent = 'All off: dense attention.';
        return;
      }
      line.innerHTML = '';
      line.append('Predicted (FLOP-ideal): ');
      r.passes.forEach((p, i) => {
        const b = document.createElement('strong');
        b.textContent = x(p.flopIdealSpeedup);
        line.append(i ? '; hires pass ' : '', b, ` at ${size(p)} (U-Net ${p.denseGflops.toPrecision(3)} → ${p.gflops.toPrecision(3)} GFLOP/step)`);
      });
    } catch (e) {
      if (n !== this.asked) return;
      line.textContent = '';
      const speedFields = Object.fromEntries(Object.entries(e.fields ?? {}).filter(([k]) => this.inputs().some((i) => i.dataset.key === k)));
      if (Object.keys(speedFields).length) showErrors(speedFields);
      else line.textContent = `No prediction: ${e.message}`;
    }
  }

  showMeasured(speed) {
    $('speed_measured').textContent = `Last image: ${measuredText(speed)}`;
  }
}
