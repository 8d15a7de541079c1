// Form fields: values, and errors shown next to the field they concern (a `[data-field]` wrapper
// with a `.error` inside); what names no field goes to the form's own error line.

export const $ = (id) => document.getElementById(id);

export const num = (id) => Number($(id).value);

/** The element that shows `field`'s errors, or undefined. */
function wrapper(field) {
  return document.querySelector(`[data-field="${CSS.escape(field)}"]`) ?? undefined;
}

export function clearErrors() {
  for (const el of document.querySelectorAll('[data-field].invalid')) el.classList.remove('invalid');
  for (const el of document.querySelectorAll('[data-field] .error')) el.textContent = '';
  $('error').textContent = '';
}

/** Shows each message next to its field; `alias` renames fields (the tab's meaning of a shared API name). Returns the messages no field took. */
export function showErrors(fields, alias = {}) {
  const rest = [];
  for (const [name, messages] of Object.entries(fields)) {
    const w = wrapper(alias[name] ?? name);
    const box = w?.querySelector('.error');
    if (!box || w.closest('[hidden]')) {
      rest.push(...messages);
      continue;
    }
    w.classList.add('invalid');
    box.textContent = messages.join('\n');
  }
  if (rest.length) $('error').textContent = rest.join('\n');
  const first = document.querySelector('[data-field].invalid');
  first?.scrollIntoView({ block: 'nearest' });
  return rest;
}

export function setError(field, message) {
  showErrors({ [field]: [message] });
}

/**
 * Checks numbers against their inputs' min, max and step before anything is sent, so a typo is
 * named where it is. Returns field → messages.
 */
export function checkNumbers(ids) {
  const errors = {};
  for (const id of ids) {
    const input = $(id);
    if (input.closest('[hidden]')) continue;
    const raw = input.value.trim();
    const v = Number(raw);
    const min = input.min === '' ? -Infinity : Number(input.min);
    const max = input.max === '' ? Infinity : Number(input.max);
    const step = input.step === '' || input.step === 'any' ? 0 : Number(input.step);
    let msg;
    if (raw === '' || !Number.isFinite(v)) msg = 'enter a number';
    else if (v < min || v > max) msg = `must be from ${min} to ${max}`;
    else if (step >= 1 && !Number.isInteger(v / step)) {
      const near = Math.min(max, Math.max(min, Math.round(v / step) * step));
      msg = step === 1 ? 'must be a whole number' : `must be a multiple of ${step} (try ${near})`;
    }
    if (msg) errors[input.closest('[data-field]')?.dataset.field ?? id] = [msg];
  }
  return errors;
}
