// Axis scales and ticks for the SVG charts.

export interface Scale {
  (value: number): number;
  ticks: number[];
  log: boolean;
  domain: [number, number];
}

export function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const residual = raw / magnitude;
  const nice = residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1;
  return nice * magnitude;
}

/** Round ticks covering [min, max]; the domain grows to the outer ticks. */
export function linearTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const step = niceStep(max - min, count);
  const start = Math.floor(min / step) * step;
  const end = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let value = start; value <= end + step / 2; value += step) ticks.push(Number(value.toPrecision(12)));
  return ticks;
}

/** Ticks at 1, 2 and 5 times each power of ten inside [min, max] (only powers when it spans many decades). */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const multipliers = hi - lo > 3 ? [1] : [1, 2, 5];
  const ticks: number[] = [];
  for (let exponent = lo; exponent <= hi; exponent += 1) {
    for (const m of multipliers) {
      const value = Number((m * Math.pow(10, exponent)).toPrecision(12));
      if (value >= min * 0.999 && value <= max * 1.001) ticks.push(value);
    }
  }
  return ticks.length >= 2 ? ticks : [min, max];
}

export function linearScale(
  values: number[],
  range: [number, number],
  options: { zero?: boolean; count?: number } = {},
): Scale {
  const finite = values.filter(Number.isFinite);
  let min = finite.length ? Math.min(...finite) : 0;
  const max = finite.length ? Math.max(...finite) : 1;
  if (options.zero && min > 0) min = 0;
  const ticks = linearTicks(min, max, options.count ?? 5);
  const d0 = ticks[0] as number;
  const d1 = ticks[ticks.length - 1] as number;
  const scale = ((value: number) => range[0] + ((value - d0) / (d1 - d0 || 1)) * (range[1] - range[0])) as Scale;
  scale.ticks = ticks;
  scale.log = false;
  scale.domain = [d0, d1];
  return scale;
}

export function logScale(values: number[], range: [number, number]): Scale {
  const positive = values.filter((v) => Number.isFinite(v) && v > 0);
  let min = positive.length ? Math.min(...positive) : 1;
  let max = positive.length ? Math.max(...positive) : 10;
  if (min === max) {
    min /= 2;
    max *= 2;
  }
  // pad to the nearest 1-2-5 step outside the data, so end points don't sit on the frame
  const down = (v: number) => {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    return [5, 2, 1].map((m) => m * p).find((s) => s <= v) ?? p;
  };
  const up = (v: number) => {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= v) ?? 10 * p;
  };
  const d0 = down(min);
  const d1 = up(max);
  const l0 = Math.log10(d0);
  const l1 = Math.log10(d1);
  const scale = ((value: number) =>
    range[0] + ((Math.log10(Math.max(value, d0 / 10)) - l0) / (l1 - l0 || 1)) * (range[1] - range[0])) as Scale;
  scale.ticks = logTicks(d0, d1);
  scale.log = true;
  scale.domain = [d0, d1];
  return scale;
}

/** Evenly spaced categories (e.g. batch sizes 1, 8, 32, 128 that are far apart on a linear axis). */
export function pointScale(values: number[], range: [number, number]): Scale {
  const distinct = [...new Set(values.filter(Number.isFinite))].sort((a, b) => a - b);
  const step = distinct.length > 1 ? (range[1] - range[0]) / (distinct.length - 1) : 0;
  const middle = (range[0] + range[1]) / 2;
  const scale = ((value: number) => {
    const index = distinct.indexOf(value);
    if (distinct.length <= 1) return middle;
    return index >= 0 ? range[0] + index * step : range[0];
  }) as Scale;
  scale.ticks = distinct;
  scale.log = false;
  scale.domain = [distinct[0] ?? 0, distinct[distinct.length - 1] ?? 1];
  return scale;
}
