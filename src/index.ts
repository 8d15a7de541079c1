export type { Tensor, IntTensor } from './tensor.js';
export { SafetensorsFile, SafetensorsError, writeSafetensors } from './io/safetensors.js';
export type { DType, TensorInfo, TensorToWrite } from './io/safetensors.js';
