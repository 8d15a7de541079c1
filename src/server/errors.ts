/**
 * How errors answer, in A1111's shapes: a field that fails validation as FastAPI's 422
 * (`detail: [{loc, msg, type}]`), anything else as A1111's API middleware writes an exception
 * (`{error, detail, body, errors}`). The status follows the error's class, never its text: a
 * UserError (bad input anywhere, inside a job included) is 422, an error of todo-sd itself 500.
 */
import { UserError } from '../errors.js';

export interface ErrorDetail {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** A request that is well-formed JSON but asks for something wrong or beyond the server's limits, found before it runs. */
export class RequestError extends UserError {
  constructor(
    readonly field: string,
    message: string,
    readonly type = 'value_error',
  ) {
    super(message);
    this.name = 'RequestError';
  }

  get detail(): ErrorDetail[] {
    return [{ loc: ['body', ...this.field.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p))], msg: this.message, type: this.type }];
  }
}

/** Rethrows a UserError as a RequestError on `field`, so the answer points at the field; other errors as they are. */
export function onFieldError(field: string, e: unknown): never {
  if (!(e instanceof UserError)) throw e;
  throw new RequestError(field, e.message);
}

/** `work`'s result, its UserError a RequestError on `field`. */
export async function onField<T>(field: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    onFieldError(field, e);
  }
}

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

const PYDANTIC_TYPES: Record<string, (p: Record<string, unknown>) => string> = {
  type: (p) => `type_error.${String(p.type).split(',')[0]}`,
  minimum: () => 'value_error.number.not_ge',
  maximum: () => 'value_error.number.not_le',
  exclusiveMinimum: () => 'value_error.number.not_gt',
  multipleOf: () => 'value_error.number.not_multiple',
  required: () => 'value_error.missing',
  enum: () => 'type_error.enum',
  maxLength: () => 'value_error.any_str.max_length',
  maxItems: () => 'value_error.list.max_items',
};

/** Fastify's schema-validation errors (Ajv) in the 422 shape, one entry per failed field. */
export function validationDetail(errors: AjvError[], context: string): ErrorDetail[] {
  return errors.map((e) => {
    const path = e.instancePath.split('/').filter(Boolean).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    if (e.keyword === 'required') path.push(String(e.params.missingProperty));
    const field = path.join('.') || context;
    return { loc: [context, ...path], msg: `${field} ${e.message ?? 'is invalid'}`, type: (PYDANTIC_TYPES[e.keyword] ?? (() => `value_error.${e.keyword}`))(e.params) };
  });
}

/** What the server answers for an error: the status and A1111's body; `internal` marks our own faults (500) for the log. */
export function errorReply(err: Error & { validation?: AjvError[]; validationContext?: string; statusCode?: number; code?: string }, bodyLimitMiB: number): { status: number; body: object; internal: boolean } {
  const shape = (detail: unknown, errors = err.message): object => ({ error: err.name, detail, body: '', errors });
  // FastAPI's class name for a body that fails its model.
  if (err.validation) return { status: 422, body: { ...shape(validationDetail(err.validation, err.validationContext ?? 'body')), error: 'RequestValidationError' }, internal: false };
  if (err instanceof RequestError) return { status: 422, body: shape(err.detail), internal: false };
  if (err instanceof UserError) return { status: 422, body: shape(err.message), internal: false };
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    const detail = `request body over ${bodyLimitMiB} MiB; send smaller images`;
    return { status: 413, body: { ...shape(detail, detail), error: 'PayloadTooLarge' }, internal: false };
  }
  // Fastify's own 4xx (malformed JSON, wrong content type, auth).
  if (err.statusCode && err.statusCode < 500) return { status: err.statusCode, body: shape(err.message), internal: false };
  return { status: 500, body: shape(err.message), internal: true };
}
