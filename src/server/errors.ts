/** Errors in A1111's (FastAPI's) 422 shape: {"detail":[{"loc":["body","steps"],"msg":"…","type":"…"}]}. */

export interface ErrorDetail {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** A request that is well-formed JSON but asks for something wrong or beyond the server's limits. */
export class RequestError extends Error {
  constructor(
    readonly field: string,
    message: string,
    readonly type = 'value_error',
  ) {
    super(message);
  }

  get detail(): ErrorDetail[] {
    return [{ loc: ['body', ...this.field.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p))], msg: this.message, type: this.type }];
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
