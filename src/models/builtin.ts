/** The model that ships inside the package: `tiny-photo`, a small trained SD-shaped model. */
import { fileURLToPath } from 'node:url';

export const BUILTIN_MODEL_NAME = 'tiny-photo';
export const BUILTIN_MODEL_DIR = fileURLToPath(new URL('../../assets/tiny-photo', import.meta.url));
