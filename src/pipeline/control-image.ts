/**
 * A ControlNet unit's control image as AUTOMATIC1111's ControlNet extension (sd-webui-controlnet
 * 1.1.4xx) makes it: the preprocessor (`canny`, `tile_resample`, `inpaint` / `inpaint_only`,
 * `none`) on the picture, then its resize mode to the generation's size with the extension's
 * edge-preserving resize (`high_quality_resize`), then diffusers' `prepare_image` values: RGB in
 * [0, 1], and for the inpaint preprocessors −1 where the mask repaints. The OpenCV operations are
 * reproduced exactly (src/image/cv-resize.ts, canny.ts, binary-map.ts).
 */
import { canny } from '../image/canny.js';
import { cvResize, type CvInterpolation } from '../image/cv-resize.js';
import { dilate, erode, lineMaxima, otsu, thinEdges, type Plane } from '../image/binary-map.js';
import type { RgbImage } from '../io/png.js';
import type { Tensor } from '../tensor.js';
import { UserError } from '../errors.js';

/** The extension's preprocessor names (`inpaint` is its "inpaint_global_harmonious"). */
export const CONTROL_PREPROCESSORS = ['none', 'canny', 'tile_resample', 'inpaint', 'inpaint_only'] as const;
export type ControlPreprocessor = (typeof CONTROL_PREPROCESSORS)[number];

/** The extension's labels for the preprocessors whose label differs from the name. */
export const PREPROCESSOR_LABELS: Partial<Record<ControlPreprocessor, string>> = { inpaint: 'inpaint_global_harmonious' };

export const RESIZE_MODES = ['just-resize', 'crop-and-resize', 'resize-and-fill'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];
/** The extension's names of the resize modes (infotext, API). */
export const A1111_RESIZE_MODES: Record<ResizeMode, string> = { 'just-resize': 'Just Resize', 'crop-and-resize': 'Crop and Resize', 'resize-and-fill': 'Resize and Fill' };

/** A slider of a preprocessor, as the extension's `/controlnet/module_list` describes it. */
export interface PreprocessorSlider {
  name: string;
  value: number;
  min: number;
  max: number;
  step: number;
}

/** Each preprocessor's resolution slider and thresholds (the extension's defaults and ranges). */
export const PREPROCESSOR_SLIDERS: Record<ControlPreprocessor, { resolution?: PreprocessorSlider; a?: PreprocessorSlider; b?: PreprocessorSlider }> = {
  none: { resolution: { name: 'Resolution', value: 512, min: 64, max: 2048, step: 8 } },
  canny: {
    resolution: { name: 'Resolution', value: 512, min: 64, max: 2048, step: 8 },
    a: { name: 'Low Threshold', value: 100, min: 1, max: 255, step: 1 },
    b: { name: 'High Threshold', value: 200, min: 1, max: 255, step: 1 },
  },
  tile_resample: { a: { name: 'Down Sampling Rate', value: 1, min: 1, max: 8, step: 0.01 } },
  inpaint: {},
  inpaint_only: {},
};

/** The extension's sorting priority of each preprocessor in its lists (higher first, then by label, after "none"). */
export const PREPROCESSOR_PRIORITY: Record<ControlPreprocessor, number> = { none: 10, canny: 100, tile_resample: 100, inpaint: 0, inpaint_only: 100 };

/** A control map: 8-bit RGB, with the repaint mask (255 = repaint) for the inpaint preprocessors. */
export interface ControlMap extends RgbImage {
  mask?: Uint8Array;
}

export interface PreprocessSettings {
  /** Processor resolution (canny: the picture's short side before detection). */
  resolution: number;
  /** Canny's low / high thresholds; tile_resample's down-sampling rate in `a`. */
  thresholdA: number;
  thresholdB: number;
}

/** A value out of a slider's range means "default", as the extension's bound check does. */
export function sliderValue(slider: PreprocessorSlider | undefined, v: number | undefined): number {
  if (!slider) return v ?? -1;
  return v === undefined || v < slider.min || v > slider.max ? slider.value : v;
}

/** numpy's round: half to even. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The extension's pixel-perfect resolution: the picture's short side scaled as its resize mode will scale it. */
export function pixelPerfectResolution(image: { width: number; height: number }, width: number, height: number, mode: ResizeMode): number {
  const k0 = height / image.height;
  const k1 = width / image.width;
  const k = mode === 'resize-and-fill' ? Math.min(k0, k1) : Math.max(k0, k1);
  return roundHalfEven(k * Math.min(image.width, image.height));
}

const pixels = (img: RgbImage) => ({ width: img.width, height: img.height, channels: 3, data: img.data });

/** resize_image_with_pad: short side to `resolution` (cubic up, area down), then edge-padded to multiples of 64. */
function resizeWithPad(img: RgbImage, resolution: number): { padded: RgbImage; width: number; height: number } {
  const k = resolution / Math.min(img.width, img.height);
  const width = roundHalfEven(img.width * k);
  const height = roundHalfEven(img.height * k);
  const resized = cvResize(pixels(img), width, height, k > 1 ? 'cubic' : 'area');
  const pw = Math.ceil(width / 64) * 64;
  const ph = Math.ceil(height / 64) * 64;
  const data = new Uint8Array(pw * ph * 3);
  for (let y = 0; y < ph; y++) {
    const sy = Math.min(y, height - 1);
    for (let x = 0; x < pw; x++) {
      const sx = Math.min(x, width - 1);
      data.set(resized.data.subarray((sy * width + sx) * 3, (sy * width + sx) * 3 + 3), (y * pw + x) * 3);
    }
  }
  return { padded: { width: pw, height: ph, data }, width, height };
}

function grey3(plane: Uint8Array, width: number, height: number): RgbImage {
  const data = new Uint8Array(plane.length * 3);
  plane.forEach((v, p) => data.fill(v, p * 3, p * 3 + 3));
  return { width, height, data };
}

/** The preprocessor on the picture (+ its repaint mask for the inpaint ones), before any resize to the generation's size. */
export function preprocessControl(image: RgbImage, mask: Uint8Array | undefined, module: ControlPreprocessor, s: PreprocessSettings): ControlMap {
  switch (module) {
    case 'canny': {
      const { padded, width, height } = resizeWithPad(image, s.resolution);
      const edges = canny(pixels(padded), Math.trunc(s.thresholdA), Math.trunc(s.thresholdB));
      const cropped = new Uint8Array(width * height);
      for (let y = 0; y < height; y++) cropped.set(edges.subarray(y * padded.width, y * padded.width + width), y * width);
      return grey3(cropped, width, height);
    }
    case 'tile_resample': {
      const rate = s.thresholdA;
      if (rate < 1.1) return image;
      return { width: Math.trunc(image.width / rate), height: Math.trunc(image.height / rate), data: cvResize(pixels(image), Math.trunc(image.width / rate), Math.trunc(image.height / rate), 'area').data };
    }
    case 'inpaint':
    case 'inpaint_only':
      if (!mask) throw new UserError(`the ${module} preprocessor needs a mask (white = repaint): give the unit a mask, or use it in inpainting (init image + mask)`);
      return { ...image, mask };
    case 'none':
      return image;
  }
}

/** Distinct RGB colours, counted up to `limit` (the extension only asks whether there are 2, or fewer than 200). */
function colourCount(img: RgbImage, limit: number): number {
  const seen = new Set<number>();
  for (let p = 0; p < img.width * img.height && seen.size < limit; p++) seen.add((img.data[p * 3]! << 16) | (img.data[p * 3 + 1]! << 8) | img.data[p * 3 + 2]!);
  return seen.size;
}

/**
 * The extension's high_quality_resize: nearest for maps of 3–199 colours (segmentation),
 * area when the area shrinks, cubic otherwise; a binary map (2 colours, dark < 16, light > 240)
 * is averaged to grey and thresholded again with Otsu's method, and one-pixel edges (canny's)
 * are thinned back to one pixel. The mask takes the map's interpolation, then > 127.
 */
export function highQualityResize(map: ControlMap, width: number, height: number): ControlMap {
  if (map.width === width && map.height === height) return map;
  const area = width * height;
  const smaller = area < map.width * map.height;
  const bigger = area > map.width * map.height;
  const colours = colourCount(map, 200);
  let binary = false;
  let onePixelEdges = false;
  if (colours === 2) {
    const min = map.data.reduce((a, v) => Math.min(a, v), 255);
    const max = map.data.reduce((a, v) => Math.max(a, v), 0);
    binary = min < 16 && max > 240;
    if (binary) {
      let thin = 0;
      let lit = 0;
      for (let c = 0; c < 3; c++) {
        const plane = { width: map.width, height: map.height, data: map.data.filter((_, i) => i % 3 === c) };
        const opened = dilate({ ...plane, data: erode(plane) });
        plane.data.forEach((v, i) => {
          if (opened[i]! < v) thin++;
          if (v > 127) lit++;
        });
      }
      onePixelEdges = thin * 2 > lit;
    }
  }
  const interpolation: CvInterpolation = colours > 2 && colours < 200 ? 'nearest' : smaller ? 'area' : 'cubic';
  let out: ControlMap = { width, height, data: cvResize(pixels(map), width, height, interpolation).data };
  if (binary) {
    const f = Math.fround;
    const grey = new Uint8Array(area);
    for (let p = 0; p < area; p++) grey[p] = Math.min(255, Math.trunc(f(f(f(out.data[p * 3]! + out.data[p * 3 + 1]!) + out.data[p * 3 + 2]!) / 3)));
    let plane: Plane = { width, height, data: grey };
    if (onePixelEdges) {
      plane = { width, height, data: otsu({ width, height, data: lineMaxima(plane) }) };
      thinEdges(plane, bigger);
    } else {
      plane = { width, height, data: otsu(plane) };
    }
    out = grey3(plane.data, width, height);
  }
  if (map.mask) {
    const mask = cvResize({ width: map.width, height: map.height, channels: 1, data: map.mask }, width, height, interpolation).data;
    out.mask = mask.map((v) => (v > 127 ? 255 : 0));
  }
  return out;
}

/** The extension's detectmap_proc geometry: stretch, cover and crop the centre, or fit inside and fill the border. */
export function resizeControlMap(map: ControlMap, width: number, height: number, mode: ResizeMode): ControlMap {
  if (mode === 'just-resize') return highQualityResize(map, width, height);
  const k = (mode === 'resize-and-fill' ? Math.min : Math.max)(height / map.height, width / map.width);
  const scaled = highQualityResize(map, roundHalfEven(map.width * k), roundHalfEven(map.height * k));
  const out: ControlMap = { width, height, data: new Uint8Array(width * height * 3), ...(map.mask ? { mask: new Uint8Array(width * height) } : {}) };
  if (mode === 'crop-and-resize') {
    const oy = Math.max(0, Math.floor((scaled.height - height) / 2));
    const ox = Math.max(0, Math.floor((scaled.width - width) / 2));
    for (let y = 0; y < height; y++) {
      out.data.set(scaled.data.subarray(((y + oy) * scaled.width + ox) * 3, ((y + oy) * scaled.width + ox + width) * 3), y * width * 3);
      out.mask?.set(scaled.mask!.subarray((y + oy) * scaled.width + ox, (y + oy) * scaled.width + ox + width), y * width);
    }
    return out;
  }
  // The border takes the median colour of the map's outermost pixels; for inpainting it is repainted.
  const border = borderMedian(map);
  for (let p = 0; p < width * height; p++) out.data.set(border, p * 3);
  out.mask?.fill(255);
  const oy = Math.max(0, Math.floor((height - scaled.height) / 2));
  const ox = Math.max(0, Math.floor((width - scaled.width) / 2));
  for (let y = 0; y < scaled.height; y++) {
    out.data.set(scaled.data.subarray(y * scaled.width * 3, (y + 1) * scaled.width * 3), ((y + oy) * width + ox) * 3);
    out.mask?.set(scaled.mask!.subarray(y * scaled.width, (y + 1) * scaled.width), (y + oy) * width + ox);
  }
  return out;
}

/** np.median over the first and last rows and columns, per channel, truncated to 8 bits. */
function borderMedian(map: RgbImage): number[] {
  const { width: w, height: h, data } = map;
  const idx = [...Array.from({ length: w }, (_, x) => x), ...Array.from({ length: w }, (_, x) => (h - 1) * w + x), ...Array.from({ length: h }, (_, y) => y * w), ...Array.from({ length: h }, (_, y) => y * w + w - 1)];
  return [0, 1, 2].map((c) => {
    const v = idx.map((p) => data[p * 3 + c]!).sort((a, b) => a - b);
    const m = v.length / 2;
    return Math.trunc(v.length % 2 ? v[Math.floor(m)]! : (v[m - 1]! + v[m]!) / 2);
  });
}

/** Maps of one size → [N, 3, H, W]: value / 255, and −1 where an inpaint mask repaints (the extension's inpaint protocol). */
export function controlMapsToTensor(maps: readonly ControlMap[]): Tensor {
  const { width, height } = maps[0]!;
  const n = width * height;
  const data = new Float32Array(maps.length * 3 * n);
  maps.forEach((m, b) => {
    for (let p = 0; p < n; p++) {
      const masked = m.mask !== undefined && m.mask[p]! / 255 > 0.5;
      for (let c = 0; c < 3; c++) data[(b * 3 + c) * n + p] = masked ? -1 : Math.fround(m.data[p * 3 + c]! / 255);
    }
  });
  return { data, dims: [maps.length, 3, height, width] };
}
