// A layered, top-to-bottom layout of a model graph (after Sugiyama): each node on the layer of
// its longest path from an input, edges that skip layers routed through invisible points, and a
// few barycenter sweeps to order each layer so edges cross less. Small and dependency-free; a
// graph is at most a few thousand nodes (the server does not describe larger ones).

export interface LayoutInput {
  /** Node keys in the order the server lists them (topological). */
  keys: string[];
  /** Edges as [from key, to key, label]. */
  edges: [string, string, string][];
  /** Width of each node (keyed); others are NODE_WIDTH wide. */
  widths?: Record<string, number>;
}

export interface PlacedNode {
  key: string;
  x: number; // centre
  y: number; // centre
  width: number;
  layer: number;
}

export interface PlacedEdge {
  from: string;
  to: string;
  label: string;
  points: [number, number][];
}

export interface Layout {
  nodes: Map<string, PlacedNode>;
  edges: PlacedEdge[];
  width: number;
  height: number;
}

export const NODE_WIDTH = 160;
export const NODE_HEIGHT = 44;
const LAYER_GAP = 36;
const NODE_GAP = 24;
const DUMMY_WIDTH = 8;
const MARGIN = 24;
const SWEEPS = 4;
// Edges that skip layers get a point per layer skipped; past this many the long ones are drawn straight.
const MAX_DUMMIES = 20000;

/** Layer of each key: one below the lowest of its predecessors; a key with none sits just above
 * its first successor. Cycles (invalid ONNX) are broken by the listed order. */
export function layers(keys: string[], edges: [string, string, string][]): Map<string, number> {
  const position = new Map(keys.map((key, index) => [key, index]));
  const incoming = new Map<string, string[]>();
  for (const [from, to] of edges) {
    if ((position.get(from) ?? -1) >= (position.get(to) ?? -1)) continue; // a back edge: ignored for layering
    const list = incoming.get(to);
    if (list) list.push(from);
    else incoming.set(to, [from]);
  }
  const layer = new Map<string, number>();
  for (const key of keys) {
    let depth = 0;
    for (const from of incoming.get(key) ?? []) depth = Math.max(depth, (layer.get(from) ?? 0) + 1);
    layer.set(key, depth);
  }
  // A node that reads nothing (a Constant, a shape) sits just above the first node that reads it,
  // not in a crowded top row with its edges running down the whole drawing.
  const outgoing = new Map<string, string[]>();
  for (const [to, froms] of incoming) {
    for (const from of froms) {
      const list = outgoing.get(from);
      if (list) list.push(to);
      else outgoing.set(from, [to]);
    }
  }
  for (const key of keys) {
    const readers = outgoing.get(key);
    if (incoming.has(key) || !readers) continue;
    layer.set(key, Math.max(0, Math.min(...readers.map((to) => layer.get(to) ?? 1)) - 1));
  }
  return layer;
}

interface Slot {
  key: string; // a node's key, or a dummy's
  width: number;
  dummy: boolean;
  x: number;
}

export function layout({ keys, edges, widths = {} }: LayoutInput): Layout {
  const layerOf = layers(keys, edges);
  const depth = keys.reduce((most, key) => Math.max(most, layerOf.get(key) ?? 0), 0);
  const rows: Slot[][] = Array.from({ length: depth + 1 }, () => []);
  const slotOf = new Map<string, Slot>();
  for (const key of keys) {
    const slot: Slot = { key, width: widths[key] ?? NODE_WIDTH, dummy: false, x: 0 };
    rows[layerOf.get(key) ?? 0]?.push(slot);
    slotOf.set(key, slot);
  }
  // Chains of slots per edge: from, dummies..., to.
  const up = new Map<string, string[]>();
  const down = new Map<string, string[]>();
  const link = (a: string, b: string) => {
    (down.get(a) ?? down.set(a, []).get(a))?.push(b);
    (up.get(b) ?? up.set(b, []).get(b))?.push(a);
  };
  let dummies = 0;
  const chains: string[][] = [];
  edges.forEach(([from, to], index) => {
    const a = layerOf.get(from) ?? 0;
    const b = layerOf.get(to) ?? 0;
    const chain = [from];
    if (b - a > 1 && dummies + (b - a - 1) <= MAX_DUMMIES) {
      for (let level = a + 1; level < b; level++) {
        const key = `\u0000${index}:${level}`;
        const slot: Slot = { key, width: DUMMY_WIDTH, dummy: true, x: 0 };
        rows[level]?.push(slot);
        slotOf.set(key, slot);
        chain.push(key);
        dummies++;
      }
    }
    chain.push(to);
    for (let i = 1; i < chain.length; i++) link(chain[i - 1] as string, chain[i] as string);
    chains.push(chain);
  });

  // Order: barycenter sweeps, down then up.
  const order = new Map<string, number>();
  const number = (row: Slot[]) => row.forEach((slot, index) => order.set(slot.key, index));
  rows.forEach(number);
  // A slot with no neighbour on the side a sweep looks at goes by those on the other side.
  const near = (key: string, neighbours: Map<string, string[]>, others: Map<string, string[]>) =>
    neighbours.get(key) ?? others.get(key) ?? [];
  const sweep = (row: Slot[], neighbours: Map<string, string[]>, others: Map<string, string[]>) => {
    const centre = new Map<string, number>();
    for (const slot of row) {
      const known = near(slot.key, neighbours, others)
        .map((key) => order.get(key))
        .filter((value): value is number => value !== undefined);
      centre.set(slot.key, known.length ? known.reduce((s, v) => s + v, 0) / known.length : (order.get(slot.key) ?? 0));
    }
    row.sort((p, q) => (centre.get(p.key) ?? 0) - (centre.get(q.key) ?? 0));
    number(row);
  };
  for (let pass = 0; pass < SWEEPS; pass++) {
    for (let level = 1; level < rows.length; level++) sweep(rows[level] as Slot[], up, down);
    for (let level = rows.length - 2; level >= 0; level--) sweep(rows[level] as Slot[], down, up);
  }

  // Coordinates: each layer packed left to right, then nudged towards the nodes it hangs from.
  const rowWidth = (row: Slot[]) => row.reduce((sum, slot) => sum + slot.width, 0) + NODE_GAP * (row.length - 1);
  const widest = rows.reduce((most, row) => Math.max(most, rowWidth(row)), 0);
  for (const row of rows) {
    let x = (widest - rowWidth(row)) / 2;
    for (const slot of row) {
      slot.x = x + slot.width / 2;
      x += slot.width + NODE_GAP;
    }
  }
  // Each slot as close to the mean of its neighbours as the order and the gaps allow (least
  // squares: adjacent slots that want to overlap are pooled and share the mean of their wishes).
  const settle = (row: Slot[], neighbours: Map<string, string[]>, others: Map<string, string[]>) => {
    const offsets: number[] = [];
    let offset = 0;
    row.forEach((slot, index) => {
      if (index > 0) offset += (row[index - 1] as Slot).width / 2 + NODE_GAP + slot.width / 2;
      offsets.push(offset);
    });
    const wanted = row.map((slot, index) => {
      const xs = near(slot.key, neighbours, others).map((key) => slotOf.get(key)?.x ?? slot.x);
      return (xs.length ? xs.reduce((s, v) => s + v, 0) / xs.length : slot.x) - (offsets[index] as number);
    });
    const pools: { sum: number; count: number }[] = [];
    for (const value of wanted) {
      pools.push({ sum: value, count: 1 });
      while (pools.length > 1) {
        const last = pools[pools.length - 1] as { sum: number; count: number };
        const before = pools[pools.length - 2] as { sum: number; count: number };
        if (before.sum / before.count <= last.sum / last.count) break;
        pools.pop();
        before.sum += last.sum;
        before.count += last.count;
      }
    }
    let index = 0;
    for (const pool of pools) {
      for (let n = 0; n < pool.count; n++, index++) {
        (row[index] as Slot).x = pool.sum / pool.count + (offsets[index] as number);
      }
    }
  };
  for (let pass = 0; pass < 2; pass++) {
    for (let level = 1; level < rows.length; level++) settle(rows[level] as Slot[], up, down);
    for (let level = rows.length - 2; level >= 0; level--) settle(rows[level] as Slot[], down, up);
  }
  let left = Infinity;
  let right = -Infinity;
  for (const row of rows) {
    for (const slot of row) {
      left = Math.min(left, slot.x - slot.width / 2);
      right = Math.max(right, slot.x + slot.width / 2);
    }
  }
  if (!Number.isFinite(left)) left = right = 0;
  const shift = MARGIN - left;
  const yOf = (level: number) => MARGIN + level * (NODE_HEIGHT + LAYER_GAP) + NODE_HEIGHT / 2;

  const nodes = new Map<string, PlacedNode>();
  for (const key of keys) {
    const slot = slotOf.get(key) as Slot;
    const level = layerOf.get(key) ?? 0;
    nodes.set(key, { key, x: slot.x + shift, y: yOf(level), width: slot.width, layer: level });
  }
  const placed: PlacedEdge[] = chains.map((chain, index) => {
    const [from, to, label] = edges[index] as [string, string, string];
    const points = chain.map((key, position): [number, number] => {
      const slot = slotOf.get(key) as Slot;
      const level = position === 0 ? (layerOf.get(from) ?? 0) : (layerOf.get(from) ?? 0) + position;
      const end = position === chain.length - 1;
      const y = end ? yOf(layerOf.get(to) ?? 0) - NODE_HEIGHT / 2 : yOf(level) + (position === 0 ? NODE_HEIGHT / 2 : 0);
      return [slot.x + shift, y];
    });
    return { from, to, label, points };
  });
  return {
    nodes,
    edges: placed,
    width: right - left + 2 * MARGIN,
    height: yOf(depth) + NODE_HEIGHT / 2 + MARGIN,
  };
}

/** An SVG path through `points`: straight down from each point, curving between them. */
export function edgePath(points: [number, number][]): string {
  const [first, ...rest] = points;
  if (!first) return "";
  let d = `M${first[0]},${first[1]}`;
  let [px, py] = first;
  for (const [x, y] of rest) {
    const mid = (py + y) / 2;
    d += ` C${px},${mid} ${x},${mid} ${x},${y}`;
    [px, py] = [x, y];
  }
  return d;
}
