// The session's images, newest first, each with its parameters and what can be done with it:
// reuse its seed or all its parameters, start img2img or inpainting from it, download it.
import { $ } from './fields.js';
import { measuredBadge, measuredPass, measuredText } from './speed.js';

export class Gallery {
  /** `actions`: { seed(item), parameters(item), img2img(item), inpaint(item), show(item) }. */
  constructor(actions) {
    this.items = [];
    this.actions = actions;
  }

  /** `item`: { png (base64), seed, parameters (A1111 infotext), width, height, speed, kind }. */
  add(item) {
    item.id = this.items.length;
    this.items.push(item);
    $('gallery').prepend(this.card(item));
    $('gallery_count').textContent = `(${this.items.length})`;
  }

  card(item) {
    const url = `data:image/png;base64,${item.png}`;
    const fig = document.createElement('figure');
    fig.className = 'shot';
    fig.dataset.seed = String(item.seed);
    const img = document.createElement('img');
    img.src = url;
    img.alt = item.parameters.split('\n')[0] || 'generated image';
    img.title = 'show it large';
    img.addEventListener('click', () => this.actions.show(item));
    const cap = document.createElement('figcaption');
    const meta = document.createElement('div');
    meta.className = 'meta';
    const left = document.createElement('span');
    left.textContent = `${item.kind} · ${item.width}x${item.height} · seed ${item.seed}`;
    const badge = document.createElement('span');
    badge.className = 'speed';
    badge.textContent = measuredBadge(item.speed);
    badge.classList.toggle('slower', (measuredPass(item.speed)?.measuredSpeedup ?? 2) <= 1);
    badge.title = measuredText(item.speed);
    meta.append(left, badge);
    const tools = document.createElement('div');
    tools.className = 'tools';
    const button = (label, title, fn, cls) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.title = title;
      b.className = cls;
      b.addEventListener('click', () => fn(item));
      return b;
    };
    const link = document.createElement('a');
    link.href = url;
    link.download = `todo-sd-${item.seed}.png`;
    link.textContent = 'Save';
    link.title = 'download the PNG (with its parameters)';
    tools.append(
      button('Seed', 'use this seed', this.actions.seed, 'reuse-seed'),
      button('Params', 'load all its parameters into the form', this.actions.parameters, 'reuse-params'),
      button('→ img2img', 'start image-to-image from it', this.actions.img2img, 'to-img2img'),
      button('→ inpaint', 'inpaint it', this.actions.inpaint, 'to-inpaint'),
      link,
    );
    const details = document.createElement('details');
    details.innerHTML = '<summary>parameters</summary><pre></pre>';
    details.querySelector('pre').textContent = item.parameters;
    cap.append(meta, tools, details);
    fig.append(img, cap);
    return fig;
  }
}
