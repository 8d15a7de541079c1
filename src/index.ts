export type { Tensor, IntTensor } from './tensor.js';
export { SafetensorsFile, SafetensorsError, writeSafetensors } from './io/safetensors.js';
export type { DType, TensorInfo, TensorToWrite } from './io/safetensors.js';
export { loadUNet, UNet, parseUNetConfig, buildUNetGraph } from './models/unet.js';
export type { UNetConfig, UNetShape, LoadOptions, UNetForwardOptions } from './models/unet.js';
export type { AttentionOptions, TodoOptions, TodoMode } from './attention/options.js';
export { autoTodoFactor } from './attention/todo.js';
export { loadVAE, VAE, parseVAEConfig } from './models/vae.js';
export type { VAEConfig } from './models/vae.js';
