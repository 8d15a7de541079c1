/**
 * Errors in what a user asked for (options, prompts, images, files they named), as opposed to
 * faults of todo-sd itself. The class decides how they are reported: the server answers 4xx,
 * the CLI prints the message (no stack) and exits non-zero.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** What an aborted run rejects with: an Error named 'AbortError', as fetch and DOM APIs use. */
export function abortError(what: string): Error {
  const e = new Error(`${what} aborted`);
  e.name = 'AbortError';
  return e;
}
