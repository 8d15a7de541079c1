// Images in the browser: files and data URLs to decoded images, canvases to PNG base64.

/** Loads an image from a URL (data: or blob:); rejects when the browser cannot decode it. */
export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('not an image the browser can read'));
    img.src = url;
  });
}

/** A dropped or chosen file as a decoded image, with a message that names the file when it is none. */
export async function imageFromFile(file) {
  if (file.type && !file.type.startsWith('image/')) throw new Error(`${file.name} is not an image (${file.type})`);
  const url = URL.createObjectURL(file);
  try {
    return await loadImage(url);
  } catch {
    throw new Error(`${file.name} is not an image the browser can read`);
  } finally {
    URL.revokeObjectURL(url);
  }
}

export function isPng(bytes) {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  return bytes.length >= 8 && sig.every((b, i) => bytes[i] === b);
}

export function base64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** A canvas as PNG, base64 without the data-URL prefix (what A1111's API takes). */
export function canvasPng(canvas) {
  return canvas.toDataURL('image/png').slice('data:image/png;base64,'.length);
}

/** An image drawn on a fresh canvas of its own size, as PNG base64 (any format the browser reads becomes a PNG). */
export function imagePng(img) {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  c.getContext('2d').drawImage(img, 0, 0);
  return canvasPng(c);
}
