// The inpainting mask, painted with the pointer on a canvas the size of the image: what is
// painted repaints. Exported as an opaque greyscale PNG (white repaints), as A1111 takes masks.

const COLOR = [255, 45, 117];
const PAINT = `rgb(${COLOR.join(', ')})`;

export class MaskPainter {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { willReadFrequently: true });
    this.brush = 24;
    this.erase = false;
    this.onChange = () => {};
    let last;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [((e.clientX - r.left) / r.width) * canvas.width, ((e.clientY - r.top) / r.height) * canvas.height];
    };
    canvas.addEventListener('pointerdown', (e) => {
      e.preventDefault();
      canvas.setPointerCapture(e.pointerId);
      last = at(e);
      this.stroke(last, last);
    });
    canvas.addEventListener('pointermove', (e) => {
      if (!last) return;
      const p = at(e);
      this.stroke(last, p);
      last = p;
    });
    const end = () => {
      if (last) this.onChange();
      last = undefined;
    };
    canvas.addEventListener('pointerup', end);
    canvas.addEventListener('pointercancel', end);
  }

  /** A fresh, empty mask for an image of this size. */
  reset(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.onChange();
  }

  clear() {
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.onChange();
  }

  /** A line of the brush's width (given in screen pixels) from a to b, in image pixels. */
  stroke(a, b) {
    const c = this.ctx;
    const scale = this.canvas.width / (this.canvas.getBoundingClientRect().width || this.canvas.width);
    c.globalCompositeOperation = this.erase ? 'destination-out' : 'source-over';
    c.strokeStyle = PAINT;
    c.fillStyle = PAINT;
    c.lineCap = 'round';
    c.lineWidth = Math.max(1, this.brush * scale);
    c.beginPath();
    c.moveTo(a[0], a[1]);
    c.lineTo(b[0], b[1]);
    c.stroke();
  }

  isEmpty() {
    const { data } = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return false;
    return true;
  }

  /** The mask as base64 PNG: each pixel's painted coverage as grey, on black. */
  png() {
    const { width, height } = this.canvas;
    const src = this.ctx.getImageData(0, 0, width, height).data;
    const out = document.createElement('canvas');
    out.width = width;
    out.height = height;
    const octx = out.getContext('2d');
    const img = octx.createImageData(width, height);
    for (let i = 0; i < src.length; i += 4) {
      img.data[i] = img.data[i + 1] = img.data[i + 2] = src[i + 3];
      img.data[i + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    return out.toDataURL('image/png').slice('data:image/png;base64,'.length);
  }

  /**
   * A mask image (white or opaque repaints, as A1111 reads masks) in place of the painting.
   * Another shape than the image's is refused; another size of the same shape is scaled.
   */
  load(img, name) {
    const { width, height } = this.canvas;
    const ratio = (w, h) => w / h;
    if (Math.abs(ratio(img.naturalWidth, img.naturalHeight) - ratio(width, height)) > 0.01 * ratio(width, height)) {
      throw new Error(`${name} is ${img.naturalWidth}x${img.naturalHeight} but the image is ${width}x${height}: a mask must have the image's shape (paint it here, or load one of the same proportions)`);
    }
    const tmp = document.createElement('canvas');
    tmp.width = width;
    tmp.height = height;
    const t = tmp.getContext('2d', { willReadFrequently: true });
    t.drawImage(img, 0, 0, width, height);
    const src = t.getImageData(0, 0, width, height).data;
    const hasAlpha = src.some((v, i) => i % 4 === 3 && v < 255);
    const out = this.ctx.createImageData(width, height);
    for (let i = 0; i < src.length; i += 4) {
      const v = hasAlpha ? src[i + 3] : 0.299 * src[i] + 0.587 * src[i + 1] + 0.114 * src[i + 2];
      out.data.set([...COLOR, Math.round(v)], i);
    }
    this.ctx.putImageData(out, 0, 0);
    this.onChange();
    return img.naturalWidth === width && img.naturalHeight === height ? '' : `${name} (${img.naturalWidth}x${img.naturalHeight}) was scaled to the image's ${width}x${height}`;
  }
}
