// Building the page with the DOM: text is always inserted as text, never parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttributes(el, attrs);
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttributes(el, attrs);
  append(el, children);
  return el;
}

function setAttributes(el, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.setAttribute('class', value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

let nextId = 0;

/// A labelled input (or `textarea`/`select` when `attrs.as` says so).
export function field(label, attrs = {}) {
  const { as = 'input', options = [], ...rest } = attrs;
  const id = `f${nextId++}`;
  const control = h(as, { id, ...rest }, ...options.map(([value, text]) => h('option', { value }, text)));
  return h('label', { for: id }, h('span', {}, label), control);
}

/// The hub's error message as it is, announced to screen readers.
export function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, error?.message ?? String(error));
}

/// A form that runs `action(data)` on submit, disabling its button meanwhile and showing any error.
export function form(action, ...children) {
  const message = h('div', { 'aria-live': 'polite' });
  const el = h('form', {
    novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      const button = el.querySelector('button[type="submit"]');
      message.replaceChildren();
      if (button) button.disabled = true;
      try {
        const done = await action(new FormData(el));
        if (done instanceof Node) message.append(done);
      } catch (error) {
        message.append(errorBox(error));
      } finally {
        if (button) button.disabled = false;
      }
    },
  }, ...children, message);
  return el;
}

export const format = {
  number: (n) => Number(n ?? 0).toLocaleString('en'),
  time: (t) => (t ? new Date(t).toLocaleString('en') : '—'),
  day: (t) => (t ? new Date(t).toLocaleDateString('en') : '—'),
};
