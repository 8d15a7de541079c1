/**
 * Image grids for the benchmark reports: one RGB image of rows x columns of results (for instance
 * seeds x ToDo settings), with labels above the columns and left of the rows, so a report needs
 * only PNGs. Labels use a built-in 5x7 bitmap font, which keeps this free of font files and
 * canvas libraries.
 */
import type { RgbImage } from '../io/png.js';

/**
 * 5x7 glyphs for printable ASCII (codes 32..126), 7 characters per glyph, one per row from the
 * top; each character is a base-32 digit whose 5 bits are the row's pixels, the highest bit
 * leftmost.
 */
const FONT =
  '00000004444404aaa0000aavavaa4fke5u4op248j3cik8lid4480000' + //  !"#$%&'
  '2488842842224804lel40044v4400000c48000v00000000cc01248g0' + // ()*+,-./
  'ehjlphe4c4444eeh1248vv2421he26aiv22vgu11he68guhhev124888' + // 01234567
  'ehhehheehhf12c0cc0cc00cc0c48248g84200v0v008421248eh12404' + // 89:;<=>?
  'eh1dlleehhvhhhuhhuhhuehggghesihhhisvgguggvvggugggehgnhhf' + // @ABCDEFG
  'hhhvhhhe44444e72222ichikokihggggggvhrllhhhhhpljhhehhhhhe' + // HIJKLMNO
  'uhhugggehhhliduhhukihfgge11uv444444hhhhhhehhhhha4hhhllla' + // PQRSTUVW
  'hha4ahhhha4444v1248gve88888e0g84210e22222e4ah0000000000v' + // XYZ[\]^_
  '842000000e1fhfggmphhu00egghe11djhhf00ehvge698s8880fhhf1e' + // `abcdefg
  'ggmphhh40c444e20622icggikokic44444e00qllhh00mphhh00ehhhe' + // hijklmno
  '00uhugg00djf1100mpggg00ege1u88s889600hhhjd00hhha400hhlla' + // pqrstuvw
  '00ha4ah00hhf1e00v248v244844244444448442448008l200'; // xyz{|}~

const GLYPH_W = 5;
const GLYPH_H = 7;
/** One blank column between glyphs. */
const ADVANCE = GLYPH_W + 1;

/** Row bits of a character's glyph; characters outside printable ASCII draw as '?'. */
function glyphRow(ch: string, row: number): number {
  const code = ch.charCodeAt(0);
  const index = code >= 32 && code <= 126 ? code - 32 : '?'.charCodeAt(0) - 32;
  return parseInt(FONT[index * GLYPH_H + row]!, 32);
}

export interface GridOptions {
  /** One label per row, drawn left of it. */
  rowLabels?: string[];
  /** One label per column, drawn above it. */
  colLabels?: string[];
  /** Integer nearest-neighbour upscaling of every image, so small (e.g. 32x32) images are visible. Default 1. */
  scale?: number;
  /** Integer upscaling of the 5x7 label font. Default 2. */
  textScale?: number;
  /** Pixels between cells, labels and the outer edge. Default 4. */
  gap?: number;
  /** Default white; labels are black on a light background and white on a dark one. */
  background?: [number, number, number];
}

class Canvas {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
    background: readonly [number, number, number],
  ) {
    this.data = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.data.set(background, i * 3);
  }

  /** Copies img upscaled by `scale` with its top-left corner at (x0, y0). */
  blit(img: RgbImage, x0: number, y0: number, scale: number): void {
    for (let y = 0; y < img.height * scale; y++) {
      const src = Math.floor(y / scale) * img.width;
      for (let x = 0; x < img.width * scale; x++) {
        const s = (src + Math.floor(x / scale)) * 3;
        this.data.set(img.data.subarray(s, s + 3), ((y0 + y) * this.width + x0 + x) * 3);
      }
    }
  }

  /** Draws text from (x0, y0), each font pixel a size x size square, clipped to x < clipRight. */
  text(s: string, x0: number, y0: number, size: number, clipRight: number, color: readonly [number, number, number]): void {
    [...s].forEach((ch, i) => {
      for (let row = 0; row < GLYPH_H; row++) {
        const bits = glyphRow(ch, row);
        for (let col = 0; col < GLYPH_W; col++) {
          if (!(bits & (1 << (GLYPH_W - 1 - col)))) continue;
          for (let dy = 0; dy < size; dy++) {
            for (let dx = 0; dx < size; dx++) {
              const x = x0 + (i * ADVANCE + col) * size + dx;
              if (x < clipRight) this.data.set(color, ((y0 + row * size + dy) * this.width + x) * 3);
            }
          }
        }
      }
    });
  }
}

/** Width in pixels of a label drawn at the given font scale (without the trailing blank column). */
function textWidth(s: string, size: number): number {
  const n = [...s].length;
  return n === 0 ? 0 : (n * ADVANCE - 1) * size;
}

const positiveInt = (v: number, name: string): number => {
  if (!Number.isInteger(v) || v < 1) throw new Error(`imageGrid: ${name} must be a positive integer, got ${v}`);
  return v;
};

/**
 * Composes rows of images into one image. Rows may differ in length; a column is as wide as its
 * widest image and a row as tall as its tallest, and each image is centred in its cell. Column
 * labels are centred above their column and row labels vertically centred left of their row;
 * a column label wider than its column is cut at the column's right edge.
 */
export function imageGrid(rows: RgbImage[][], opts: GridOptions = {}): RgbImage {
  const scale = positiveInt(opts.scale ?? 1, 'scale');
  const size = positiveInt(opts.textScale ?? 2, 'textScale');
  const gap = opts.gap ?? 4;
  if (!Number.isInteger(gap) || gap < 0) throw new Error(`imageGrid: gap must be a non-negative integer, got ${gap}`);
  const background = opts.background ?? [255, 255, 255];
  const nCols = Math.max(0, ...rows.map((r) => r.length));
  if (rows.length === 0 || nCols === 0) throw new Error('imageGrid: no images');
  if (opts.rowLabels && opts.rowLabels.length !== rows.length) {
    throw new Error(`imageGrid: ${opts.rowLabels.length} row labels for ${rows.length} rows`);
  }
  if (opts.colLabels && opts.colLabels.length !== nCols) {
    throw new Error(`imageGrid: ${opts.colLabels.length} column labels for ${nCols} columns`);
  }
  rows.flat().forEach((img) => {
    if (img.data.length !== img.width * img.height * 3) throw new Error(`imageGrid: a ${img.width}x${img.height} image needs ${img.width * img.height * 3} bytes, got ${img.data.length}`);
  });

  const colW = Array.from({ length: nCols }, (_, j) => Math.max(0, ...rows.map((r) => (r[j]?.width ?? 0) * scale)));
  const textH = GLYPH_H * size;
  // A labelled row is at least as tall as its label, so labels never run into the next row.
  const rowH = rows.map((r) => Math.max(opts.rowLabels ? textH : 0, ...r.map((img) => img.height * scale)));
  const labelW = opts.rowLabels ? Math.max(0, ...opts.rowLabels.map((l) => textWidth(l, size))) : 0;
  const left = gap + (opts.rowLabels ? labelW + gap : 0);
  const top = gap + (opts.colLabels ? textH + gap : 0);
  const colX = colW.map((_, j) => left + colW.slice(0, j).reduce((s, w) => s + w + gap, 0));
  const rowY = rowH.map((_, i) => top + rowH.slice(0, i).reduce((s, h) => s + h + gap, 0));
  const width = colX[nCols - 1]! + colW[nCols - 1]! + gap;
  const height = rowY[rows.length - 1]! + rowH[rows.length - 1]! + gap;

  const canvas = new Canvas(width, height, background);
  const [r, g, b] = background;
  const ink: [number, number, number] = 0.299 * r + 0.587 * g + 0.114 * b > 127 ? [0, 0, 0] : [255, 255, 255];
  rows.forEach((row, i) =>
    row.forEach((img, j) => {
      const x = colX[j]! + Math.floor((colW[j]! - img.width * scale) / 2);
      const y = rowY[i]! + Math.floor((rowH[i]! - img.height * scale) / 2);
      canvas.blit(img, x, y, scale);
    }),
  );
  opts.colLabels?.forEach((label, j) => {
    const x = colX[j]! + Math.max(0, Math.floor((colW[j]! - textWidth(label, size)) / 2));
    canvas.text(label, x, gap, size, colX[j]! + colW[j]!, ink);
  });
  opts.rowLabels?.forEach((label, i) => {
    canvas.text(label, gap, rowY[i]! + Math.floor((rowH[i]! - textH) / 2), size, gap + labelW, ink);
  });
  return { width, height, data: canvas.data };
}
