// Words and numbers as every page shows them (the Lab panel's model.ts and panel.tsx
// follow the same rules): "3 comms", "4 min", "1.2 KiB", kernels named by notebook.

/** "1 comm", "3 comms". */
export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Epoch ms of a server timestamp (microseconds trimmed: Date.parse only promises ms). */
export function parseTime(iso) {
  return iso ? Date.parse(iso.replace(/(\.\d{3})\d+/, '$1')) : NaN;
}

/**
 * "3 s", "4 min", "2 h 5 min", "3 d 4 h": the two largest units, the second left out when
 * it is 0. A non-breaking space keeps each number with its unit.
 */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const parts =
    s < 60
      ? [[s, 's']]
      : s < 3600
        ? [[Math.floor(s / 60), 'min']]
        : s < 86400
          ? [
              [Math.floor(s / 3600), 'h'],
              [Math.floor((s % 3600) / 60), 'min']
            ]
          : [
              [Math.floor(s / 86400), 'd'],
              [Math.floor((s % 86400) / 3600), 'h']
            ];
  return parts
    .filter(([n], i) => i === 0 || n > 0)
    .map(([n, unit]) => `${n}\u00a0${unit}`)
    .join(' ');
}

/** A widget model's public class name ("IntSlider" for IntSliderModel), or null. */
export function widgetName(comm) {
  const name = comm.widget?.model_name;
  return name ? name.replace(/Model$/, '') || name : null;
}

/** Where a widget's class comes from: "@jupyter-widgets/controls@2.0.0". */
export function widgetModule(comm) {
  const { model_module: module, model_module_version: version } =
    comm.widget ?? {};
  return module ? `${module}${version ? `@${version}` : ''}` : '';
}

/** "4 min ago", or "never" for a null time. */
export function ago(iso, now) {
  return iso ? `${duration(now - parseTime(iso))} ago` : 'never';
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** Labels of kernels seen before: a kernel that went away keeps its notebook's name. */
const seen = new Map();

/**
 * A kernel by what people know it as: its notebook's (or console's) path, as the Lab panel
 * and `jupyter comms list` name it; a kernel of no session by its name and short id
 * ("python3 · 5b7a1c2d"). `kernels` maps ids to /api/kernels entries with a `paths` list
 * (from /api/sessions).
 */
export function kernelLabel(kernels, kernelId) {
  const kernel = kernels.get(kernelId);
  const short = kernelId.slice(0, 8);
  if (!kernel) return seen.get(kernelId) ?? `kernel ${short}`;
  const label = kernel.paths?.length
    ? kernel.paths.join(', ')
    : `${kernel.name} · ${short}`;
  seen.set(kernelId, label);
  return label;
}
