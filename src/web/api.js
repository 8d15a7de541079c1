// The server's HTTP API as the page uses it: JSON in and out, errors with the fields they name.

/** An answer that is not a success: `fields` maps a field name to its messages (A1111's 422 `loc`). */
export class ApiError extends Error {
  constructor(message, status, fields = {}) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

/** The request never got an answer: the server stopped, restarted or the network went away. */
export class ConnectionLost extends Error {}

/** A 422 `loc` (['body', 'override_settings', 'token_downsampling_factor'], ['body', 'init_images', 0]) → the field it names. */
function fieldOf(loc) {
  const names = loc.slice(1).filter((p) => typeof p === 'string');
  return names[names.length - 1] ?? '';
}

export async function call(path, body) {
  let res;
  try {
    res = await fetch(path, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch (e) {
    throw new ConnectionLost(`no answer from the server (${e.message})`);
  }
  const text = await res.text().catch(() => '');
  let data;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 200) };
  }
  if (res.ok) return data;
  const fields = {};
  let message = res.statusText;
  if (Array.isArray(data?.detail)) {
    for (const d of data.detail) (fields[fieldOf(d.loc ?? [])] ??= []).push(d.msg);
    message = data.detail.map((d) => d.msg).join('\n');
  } else if (data?.detail) {
    message = data.detail;
  }
  throw new ApiError(message, res.status, fields);
}

export const sdapi = (path, body) => call(`/sdapi/v1/${path}`, body);
export const todoApi = (path, body) => call(`/todo-sd/v1/${path}`, body);
