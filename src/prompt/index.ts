/** AUTOMATIC1111's prompt syntax: emphasis, chunking, BREAK, prompt editing, and the conditioning built from them. */
export { parsePromptAttention } from './attention.js';
export { promptChunks, emptyChunk, COMMA_BACKTRACK } from './chunks.js';
export type { ChunkTokenizer, PromptChunk } from './chunks.js';
export { encodeWeighted, concatChannels, padToLength } from './conditioning.js';
export type { EncodeTokens, TextEmbedding, TextEncoding } from './conditioning.js';
export { promptSchedule, entryAt } from './schedule.js';
export type { ScheduledPrompt } from './schedule.js';
export { PromptConditioning, PROMPT_SYNTAXES } from './prompt-conditioning.js';
export type { PromptSyntax, ConditioningRequest, PromptTokenizer, PromptEncoder } from './prompt-conditioning.js';
