// The model's graph, drawn: nodes in layers from the inputs down, pan (drag) and zoom (wheel or
// buttons), a search that finds a node by name or operator, a panel with the selected node's
// attributes and the shapes of what it reads and writes, and a backend picker that colours each
// node by whether that backend runs it (supported / falls back / unsupported / no answer), with
// a symbol and a pattern as well as a colour. The graph is read by the worker at inspection
// (GET /versions/<id>/graph/); this component never sees the model file.
import {
  memo,
  useCallback,
  useEffect,
  useId,
  useMemo,
  useRef,
  useState,
  type KeyboardEvent,
  type MouseEvent,
  type PointerEvent,
} from "react";
import { get } from "../api/client";
import type { components } from "../api/schema";
import { Empty, ErrorMessage, Loading, Notice } from "../components/ui";
import { useResource } from "../lib/hooks";
import { edgePath, layout, NODE_HEIGHT, NODE_WIDTH, type Layout } from "./graphLayout";

export type VersionGraph = components["schemas"]["VersionGraph"];
type Graph = NonNullable<VersionGraph["graph"]>;
type GraphNode = Graph["nodes"][number];
type BackendNodes = components["schemas"]["BackendNodes"];
type Status = components["schemas"]["NodeOutcomeStatusEnum"];

export const STATUS: Record<Status, { icon: string; label: string; className: string }> = {
  supported: { icon: "✓", label: "Supported", className: "status-supported" },
  fallback: { icon: "↘", label: "Falls back", className: "status-fallback" },
  unsupported: { icon: "✕", label: "Unsupported", className: "status-unsupported" },
  unknown: { icon: "?", label: "No answer", className: "status-unknown" },
};
const STATUSES: Status[] = ["unsupported", "fallback", "unknown", "supported"];

// Pseudo nodes for the graph's inputs and outputs, drawn as pills at its ends.
const INPUT = "\u0001in:";
const OUTPUT = "\u0001out:";
const END_WIDTH = 120;
const MIN_ZOOM = 0.05;
const MAX_ZOOM = 3;
const PAN_STEP = 120;
const READABLE_ZOOM = 0.5;
// The server describes graphs up to this many nodes (workers/engine/graph_view.py MAX_DRAWN_NODES).
const DRAW_LIMIT = 3000;

interface Outcome {
  status: Status;
  reason: string;
  device: string;
  after_rewrite: string;
}

interface View {
  x: number;
  y: number;
  k: number;
}

function clip(text: string, chars: number): string {
  return text.length <= chars ? text : `${text.slice(0, chars - 1)}…`;
}

export function shapeText(value: Graph["values"][string] | undefined): string {
  if (!value) return "shape unknown";
  const dims = value.s ? `[${value.s.map((dim) => (dim === null ? "?" : String(dim))).join(", ")}]` : "[?]";
  return `${value.t ?? "?"}${dims}${value.w ? " (weight)" : ""}`;
}

/** The column of one profile's backend: node id -> its outcome. */
function outcomesOf(entry: BackendNodes | undefined): Map<string, Outcome> {
  const map = new Map<string, Outcome>();
  for (const group of entry?.groups ?? []) {
    for (const node of group.nodes) {
      map.set(node, {
        status: group.status,
        reason: group.reason,
        device: group.device,
        after_rewrite: group.after_rewrite,
      });
    }
  }
  return map;
}

const pickKey = (entry: BackendNodes) => `${entry.profile}/${entry.backend}`;

/** The column shown first: a backend the profile builds for that refuses something, else the first. */
export function defaultPick(support: BackendNodes[]): string {
  const built = support.filter((entry) => !entry.report_only);
  const troubled = built.find((entry) => (entry.counts.unsupported ?? 0) > 0);
  const first = troubled ?? built[0] ?? support[0];
  return first ? pickKey(first) : "";
}

/** The graph of a version, loaded when shown. */
export function GraphView({ versionId }: { versionId: number }) {
  const graph = useResource(
    (signal) => get<VersionGraph>(`versions/${versionId}/graph/`, undefined, signal),
    [versionId],
  );
  if (graph.error) {
    return graph.error.status === 404 ? (
      <Notice title="No graph to draw">{graph.error.message}</Notice>
    ) : (
      <ErrorMessage error={graph.error} title="The graph could not be loaded" />
    );
  }
  if (!graph.data) return <Loading label="Loading the graph…" height={200} />;
  return <GraphCanvas data={graph.data} />;
}

export function GraphCanvas({ data }: { data: VersionGraph }) {
  if (!data.graph) {
    return (
      <Notice
        kind="warn"
        title={`${data.node_count > DRAW_LIMIT ? "Too big to draw here" : "Not drawn here"}; ${data.node_count.toLocaleString("en")} nodes`}
      >
        {data.omitted} <a href="#matrix">Go to the op-support table</a>.
      </Notice>
    );
  }
  if (!data.graph.nodes.length) return <Empty title="The model's graph has no nodes." />;
  return <DrawnGraph graph={data.graph} support={data.support} notes={data.notes} />;
}

function DrawnGraph({ graph, support, notes }: { graph: Graph; support: BackendNodes[]; notes: string[] }) {
  const byId = useMemo(() => new Map(graph.nodes.map((node) => [node.id, node])), [graph.nodes]);
  const drawing = useMemo(() => arrange(graph), [graph]);
  const [pick, setPick] = useState(() => defaultPick(support));
  const entry = support.find((each) => pickKey(each) === pick);
  const outcomes = useMemo(() => outcomesOf(entry), [entry]);
  const [selected, setSelected] = useState<string | null>(null);
  const [view, setView] = useState<View>({ x: 0, y: 0, k: 1 });
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<{ query: string; matches: string[]; index: number } | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const ids = { search: useId(), pick: useId(), panel: useId(), status: useId() };

  const size = useCallback(() => {
    const element = box.current;
    return { width: element?.clientWidth || 800, height: element?.clientHeight || 520 };
  }, []);

  const fit = useCallback(() => {
    const { width, height } = size();
    const k = Math.min(1, Math.max(MIN_ZOOM, Math.min(width / drawing.width, height / drawing.height)));
    setView({ k, x: (width - drawing.width * k) / 2, y: 8 });
  }, [drawing, size]);
  // A graph that fits only when too small to read opens at its inputs, readable; Fit shows it whole.
  useEffect(() => {
    const { width, height } = size();
    if (Math.min(width / drawing.width, height / drawing.height) >= READABLE_ZOOM) return fit();
    const first = [...drawing.nodes.values()].find((placed) => placed.layer === 0);
    setView({ k: 1, x: width / 2 - (first?.x ?? drawing.width / 2), y: 8 });
  }, [drawing, fit, size]);

  const centre = useCallback(
    (id: string) => {
      const placed = drawing.nodes.get(id);
      if (!placed) return;
      const { width, height } = size();
      setView((current) => {
        const k = Math.max(current.k, 0.6);
        return { k, x: width / 2 - placed.x * k, y: height / 2 - placed.y * k };
      });
    },
    [drawing, size],
  );

  // A node reached with Tab comes into view if it is outside it; the view stays put otherwise.
  const reveal = useCallback(
    (id: string) => {
      const placed = drawing.nodes.get(id);
      if (!placed) return;
      const { width, height } = size();
      setView((current) => {
        const x = placed.x * current.k + current.x;
        const y = placed.y * current.k + current.y;
        if (x > 40 && x < width - 40 && y > 20 && y < height - 20) return current;
        return { ...current, x: width / 2 - placed.x * current.k, y: height / 2 - placed.y * current.k };
      });
    },
    [drawing, size],
  );

  const select = useCallback(
    (id: string, move = true) => {
      setSelected(id);
      if (move) centre(id);
    },
    [centre],
  );

  const zoom = useCallback(
    (factor: number, at?: { x: number; y: number }) => {
      const { width, height } = size();
      const point = at ?? { x: width / 2, y: height / 2 };
      setView((current) => {
        const k = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, current.k * factor));
        const ratio = k / current.k;
        return { k, x: point.x - (point.x - current.x) * ratio, y: point.y - (point.y - current.y) * ratio };
      });
    },
    [size],
  );
  const pan = (dx: number, dy: number) => setView((current) => ({ ...current, x: current.x + dx, y: current.y + dy }));

  // The wheel zooms the drawing, not the page: a listener that may cancel the scroll.
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const onWheel = (event: WheelEvent) => {
      event.preventDefault();
      const bounds = element.getBoundingClientRect();
      zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, { x: event.clientX - bounds.left, y: event.clientY - bounds.top });
    };
    element.addEventListener("wheel", onWheel, { passive: false });
    return () => element.removeEventListener("wheel", onWheel);
  }, [zoom]);

  const drag = useRef<{ pointer: number; x: number; y: number; moved: boolean } | null>(null);
  const onPointerDown = (event: PointerEvent<SVGSVGElement>) => {
    if (event.button !== 0) return;
    drag.current = { pointer: event.pointerId, x: event.clientX, y: event.clientY, moved: false };
  };
  const onPointerMove = (event: PointerEvent<SVGSVGElement>) => {
    const current = drag.current;
    if (!current || current.pointer !== event.pointerId) return;
    const dx = event.clientX - current.x;
    const dy = event.clientY - current.y;
    if (!current.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!current.moved) event.currentTarget.setPointerCapture?.(event.pointerId);
    current.moved = true;
    current.x = event.clientX;
    current.y = event.clientY;
    pan(dx, dy);
  };
  const onPointerUp = (event: PointerEvent<SVGSVGElement>) => {
    if (drag.current?.pointer === event.pointerId) {
      // A drag that ends on a node is a pan, not a click on it.
      if (drag.current.moved) event.currentTarget.dataset.dragged = "1";
      drag.current = null;
    }
  };
  const onNodeClick = useCallback(
    (id: string, event: MouseEvent) => {
      const svg = (event.currentTarget as SVGElement).ownerSVGElement;
      if (svg?.dataset.dragged) {
        delete svg.dataset.dragged;
        return;
      }
      select(id, false);
    },
    [select],
  );

  const search = (text: string) => {
    const q = text.trim().toLowerCase();
    if (!q) return;
    if (found && found.query === q && found.matches.length) {
      const index = (found.index + 1) % found.matches.length;
      setFound({ ...found, index });
      select(found.matches[index] as string);
      return;
    }
    const exact = graph.nodes.filter((node) => [node.id, node.name, node.op].some((v) => v?.toLowerCase() === q));
    const partial = graph.nodes.filter(
      (node) => !exact.includes(node) && [node.id, node.name, node.op].some((v) => v?.toLowerCase().includes(q)),
    );
    const matches = [...exact, ...partial].map((node) => node.id);
    setFound({ query: q, matches, index: 0 });
    if (matches[0]) select(matches[0]);
  };

  const unsupported = useMemo(
    () => graph.nodes.filter((node) => outcomes.get(node.id)?.status === "unsupported").map((node) => node.id),
    [graph.nodes, outcomes],
  );
  const nextUnsupported = () => {
    if (!unsupported.length) return;
    const at = selected ? unsupported.indexOf(selected) : -1;
    select(unsupported[(at + 1) % unsupported.length] as string);
  };

  const node = selected ? byId.get(selected) : undefined;
  const counts = entry?.counts ?? {};
  const matchLine = found
    ? found.matches.length
      ? `${found.index + 1} of ${found.matches.length} nodes match "${found.query}": ${found.matches[found.index]}`
      : `No node is named "${found.query}" or runs an operator of that name.`
    : "";

  return (
    <div className="graph-view">
      <div className="toolbar graph-toolbar">
        <form
          className="graph-search"
          role="search"
          onSubmit={(event) => {
            event.preventDefault();
            search(query);
          }}
        >
          <label htmlFor={ids.search} className="visually-hidden">
            Find a node by name or operator
          </label>
          <input
            id={ids.search}
            type="search"
            className="input input-small"
            placeholder="Find a node, e.g. Conv"
            value={query}
            onChange={(event) => {
              setQuery(event.target.value);
              setFound(null);
            }}
          />
          <button type="submit" className="button button-small">
            Find
          </button>
        </form>
        {support.length ? (
          <label className="graph-pick" htmlFor={ids.pick}>
            Colour by{" "}
            <select
              id={ids.pick}
              className="input input-small"
              value={pick}
              onChange={(event) => setPick(event.target.value)}
            >
              <option value="">No backend</option>
              {support.map((each) => (
                <option key={pickKey(each)} value={pickKey(each)}>
                  {each.profile} / {each.backend}
                  {each.report_only ? " (reference)" : ""}
                </option>
              ))}
            </select>
          </label>
        ) : null}
        <div className="graph-zoom" role="group" aria-label="Move the drawing">
          <button type="button" className="button button-small" onClick={() => zoom(1.25)} aria-label="Zoom in">
            +
          </button>
          <button type="button" className="button button-small" onClick={() => zoom(0.8)} aria-label="Zoom out">
            −
          </button>
          <button type="button" className="button button-small" onClick={fit}>
            Fit
          </button>
          <button type="button" className="button button-small" onClick={() => pan(PAN_STEP, 0)} aria-label="Pan left">
            ←
          </button>
          <button type="button" className="button button-small" onClick={() => pan(0, PAN_STEP)} aria-label="Pan up">
            ↑
          </button>
          <button type="button" className="button button-small" onClick={() => pan(0, -PAN_STEP)} aria-label="Pan down">
            ↓
          </button>
          <button
            type="button"
            className="button button-small"
            onClick={() => pan(-PAN_STEP, 0)}
            aria-label="Pan right"
          >
            →
          </button>
        </div>
      </div>
      <p className="muted small graph-found" aria-live="polite">
        {matchLine}
      </p>
      {entry ? (
        <div className="graph-verdict">
          <p id={ids.status} aria-live="polite">
            <strong>
              {counts.unsupported ?? 0} node{counts.unsupported === 1 ? "" : "s"} unsupported on {entry.backend}
            </strong>
            {counts.fallback ? `, ${counts.fallback} falling back` : ""}
            {counts.unknown ? `, ${counts.unknown} without an answer` : ""} ({entry.profile}
            {entry.report_only ? ", reference only" : ""}).
          </p>
          <button
            type="button"
            className="button button-small"
            onClick={nextUnsupported}
            disabled={!unsupported.length}
          >
            Next unsupported node
          </button>
          <ul className="legend graph-legend" aria-label="What the marks mean">
            {STATUSES.map((status) => (
              <li key={status} className={`legend-cell graph-legend-${status}`}>
                <svg width="22" height="14" aria-hidden="true" focusable="false">
                  <rect
                    className={`graph-swatch ${STATUS[status].className}`}
                    x="1"
                    y="1"
                    width="20"
                    height="12"
                    rx="3"
                  />
                </svg>
                <span aria-hidden="true">{STATUS[status].icon}</span> {STATUS[status].label}
              </li>
            ))}
          </ul>
        </div>
      ) : support.length ? (
        <p className="muted small">Pick a backend to colour the nodes by whether it runs them.</p>
      ) : null}
      {notes.length ? (
        <ul className="notes">
          {notes.map((note) => (
            <li key={note}>{note}</li>
          ))}
        </ul>
      ) : null}
      <div className="graph-body">
        <div className="graph-canvas" ref={box}>
          <svg
            role="group"
            aria-label={`Model graph, ${graph.nodes.length} nodes. Drag to pan, use the wheel or the buttons to zoom.`}
            width="100%"
            height="100%"
            onPointerDown={onPointerDown}
            onPointerMove={onPointerMove}
            onPointerUp={onPointerUp}
            onPointerCancel={onPointerUp}
          >
            <defs>
              <pattern
                id="graph-hatch"
                width="8"
                height="8"
                patternUnits="userSpaceOnUse"
                patternTransform="rotate(45)"
              >
                <rect width="8" height="8" fill="#fde2df" />
                <line x1="0" y1="0" x2="0" y2="8" stroke="#f2b8b1" strokeWidth="4" />
              </pattern>
              <clipPath id="graph-node-clip">
                <rect x="0" y="0" width={NODE_WIDTH - 18} height={NODE_HEIGHT} />
              </clipPath>
              <marker
                id="graph-arrow"
                viewBox="0 0 8 8"
                refX="8"
                refY="4"
                markerWidth="7"
                markerHeight="7"
                orient="auto"
              >
                <path d="M0,0 L8,4 L0,8 z" fill="#6e7781" />
              </marker>
            </defs>
            <g transform={`translate(${view.x},${view.y}) scale(${view.k})`}>
              <Drawing
                drawing={drawing}
                graph={graph}
                outcomes={entry ? outcomes : null}
                selected={selected}
                onSelect={onNodeClick}
                onKeySelect={select}
                onFocusNode={reveal}
                backend={entry?.backend ?? ""}
              />
            </g>
          </svg>
        </div>
        <aside className="graph-panel" aria-labelledby={ids.panel}>
          {node ? (
            <NodeDetails
              node={node}
              graph={graph}
              outcome={entry ? outcomes.get(node.id) : undefined}
              backend={entry?.backend}
              titleId={ids.panel}
              onGo={(id) => select(id)}
              producers={drawing.producers}
              consumers={drawing.consumers}
            />
          ) : (
            <>
              <h3 className="h3" id={ids.panel}>
                Node details
              </h3>
              <p className="muted small">
                Click a node, or focus it and press Enter, to see its attributes and shapes.
              </p>
            </>
          )}
        </aside>
      </div>
    </div>
  );
}

interface Arranged extends Layout {
  producers: Map<string, string>; // value -> node id
  consumers: Map<string, string[]>; // value -> node ids
}

/** Layout of the nodes, with the graph's inputs and outputs as pills; weights are not edges. */
function arrange(graph: Graph): Arranged {
  const producers = new Map<string, string>();
  const consumers = new Map<string, string[]>();
  const inputs = graph.inputs.filter((name) => !graph.values[name]?.w);
  for (const name of inputs) producers.set(name, INPUT + name);
  for (const node of graph.nodes) for (const name of node.out) if (name) producers.set(name, node.id);
  const edges: [string, string, string][] = [];
  for (const node of graph.nodes) {
    for (const name of new Set(node.in)) {
      const from = name ? producers.get(name) : undefined;
      if (!from) continue;
      edges.push([from, node.id, name]);
      if (!from.startsWith(INPUT)) (consumers.get(name) ?? consumers.set(name, []).get(name))?.push(node.id);
    }
  }
  for (const name of graph.outputs) {
    const from = producers.get(name);
    if (from) edges.push([from, OUTPUT + name, name]);
  }
  const keys = [...inputs.map((name) => INPUT + name), ...graph.nodes.map((node) => node.id)];
  keys.push(...graph.outputs.filter((name) => producers.has(name)).map((name) => OUTPUT + name));
  const widths: Record<string, number> = {};
  for (const key of keys) if (key.startsWith(INPUT) || key.startsWith(OUTPUT)) widths[key] = END_WIDTH;
  return { ...layout({ keys, edges, widths }), producers, consumers };
}

interface DrawingProps {
  drawing: Arranged;
  graph: Graph;
  outcomes: Map<string, Outcome> | null;
  selected: string | null;
  backend: string;
  onSelect: (id: string, event: MouseEvent) => void;
  onKeySelect: (id: string, move?: boolean) => void;
  onFocusNode: (id: string) => void;
}

// Drawn once per layout, colouring and selection: panning and zooming only move the group around it.
const Drawing = memo(function Drawing({
  drawing,
  graph,
  outcomes,
  selected,
  backend,
  onSelect,
  onKeySelect,
  onFocusNode,
}: DrawingProps) {
  const [focused, setFocused] = useState<string | null>(null);
  return (
    <>
      <g className="graph-edges" aria-hidden="true">
        {drawing.edges.map((edge, index) => (
          <path key={index} d={edgePath(edge.points)} markerEnd="url(#graph-arrow)">
            <title>{`${edge.label}: ${shapeText(graph.values[edge.label])}`}</title>
          </path>
        ))}
      </g>
      {[...graph.inputs, ...graph.outputs].map((name, index) => {
        const key = (index < graph.inputs.length ? INPUT : OUTPUT) + name;
        const placed = drawing.nodes.get(key);
        if (!placed) return null;
        return (
          <g key={key} className="graph-end" transform={`translate(${placed.x - END_WIDTH / 2},${placed.y - 14})`}>
            <rect width={END_WIDTH} height={28} rx={14} />
            <text x={END_WIDTH / 2} y={18} textAnchor="middle">
              {index < graph.inputs.length ? "in: " : "out: "}
              {clip(name, 13)}
            </text>
            <title>{`${name}: ${shapeText(graph.values[name])}`}</title>
          </g>
        );
      })}
      {graph.nodes.map((node) => {
        const placed = drawing.nodes.get(node.id);
        if (!placed) return null;
        const outcome = outcomes?.get(node.id);
        const look = outcome ? STATUS[outcome.status] : null;
        const label = `${node.op} ${node.name || node.id}${look ? `: ${look.label.toLowerCase()} on ${backend}` : ""}`;
        const classes = ["graph-node", look?.className ?? "status-none"];
        if (node.id === selected) classes.push("is-selected");
        if (node.id === focused) classes.push("is-focused");
        return (
          <g
            key={node.id}
            className={classes.join(" ")}
            transform={`translate(${placed.x - NODE_WIDTH / 2},${placed.y - NODE_HEIGHT / 2})`}
            role="button"
            tabIndex={0}
            aria-label={label}
            aria-pressed={node.id === selected}
            data-node={node.id}
            onClick={(event) => onSelect(node.id, event)}
            onKeyDown={(event: KeyboardEvent) => {
              if (event.key === "Enter" || event.key === " ") {
                event.preventDefault();
                onKeySelect(node.id, false);
              }
            }}
            onFocus={() => {
              setFocused(node.id);
              onFocusNode(node.id);
            }}
            onBlur={() => setFocused(null)}
          >
            <rect className="graph-node-box" width={NODE_WIDTH} height={NODE_HEIGHT} rx={6} />
            {look ? (
              <text className="graph-node-icon" x={10} y={27} aria-hidden="true">
                {look.icon}
              </text>
            ) : null}
            {/* Whole words, clipped by the box rather than shortened: what shows is part of the node's name. */}
            <g clipPath="url(#graph-node-clip)">
              {/* One text, so the words read "Conv stem/conv" with a space, as the name says them. */}
              <text>
                <tspan className="graph-node-op" x={look ? 28 : 10} y={18}>
                  {node.op}
                </tspan>{" "}
                <tspan className="graph-node-name" x={look ? 28 : 10} y={34}>
                  {node.name || node.id}
                </tspan>
              </text>
            </g>
            {node.note ? (
              <text className="graph-node-icon" x={NODE_WIDTH - 16} y={18} aria-hidden="true">
                ⊞
              </text>
            ) : null}
          </g>
        );
      })}
    </>
  );
});

function NodeDetails({
  node,
  graph,
  outcome,
  backend,
  titleId,
  onGo,
  producers,
  consumers,
}: {
  node: GraphNode;
  graph: Graph;
  outcome: Outcome | undefined;
  backend: string | undefined;
  titleId: string;
  onGo: (id: string) => void;
  producers: Map<string, string>;
  consumers: Map<string, string[]>;
}) {
  const look = outcome ? STATUS[outcome.status] : null;
  const attributes = Object.entries(node.attrs ?? {});
  const value = (name: string, go: string[], key: string) => (
    <li key={key}>
      <code>{name || "(absent)"}</code> <span className="muted">{name ? shapeText(graph.values[name]) : ""}</span>
      {go.map((id) => (
        <button key={id} type="button" className="button button-small button-quiet" onClick={() => onGo(id)}>
          Go to {clip(id, 24)}
        </button>
      ))}
    </li>
  );
  return (
    <>
      <h3 className="h3" id={titleId}>
        {node.op} <span className="muted">{node.name || node.id}</span>
      </h3>
      {look && backend ? (
        <p className={`graph-status ${look.className}`}>
          <span aria-hidden="true">{look.icon}</span> {look.label} on {backend}
          {outcome?.device ? ` (${outcome.device})` : ""}
          {outcome?.reason ? `: ${outcome.reason}` : "."}
          {outcome?.after_rewrite ? ` Runs after rewrite ${outcome.after_rewrite}.` : ""}
        </p>
      ) : null}
      <dl className="graph-kv">
        <div>
          <dt>Operator</dt>
          <dd>
            {node.dom ? `${node.dom}:` : ""}
            {node.op}
          </dd>
        </div>
        <div>
          <dt>Name</dt>
          <dd>{node.name === "" ? "(unnamed)" : (node.name ?? node.id)}</dd>
        </div>
        {node.name !== undefined ? (
          <div>
            <dt>Report label</dt>
            <dd>{node.id}</dd>
          </div>
        ) : null}
      </dl>
      {node.note ? <p className="small">{node.note}</p> : null}
      <h4 className="h4">Attributes</h4>
      {attributes.length ? (
        <dl className="graph-kv">
          {attributes.map(([key, text]) => (
            <div key={key}>
              <dt>{key}</dt>
              <dd>
                <code>{text}</code>
              </dd>
            </div>
          ))}
        </dl>
      ) : (
        <p className="muted small">None.</p>
      )}
      <h4 className="h4">Inputs</h4>
      <ul className="graph-values">
        {node.in.map((name, index) => {
          const from = producers.get(name);
          const go = from && from !== node.id && !from.startsWith(INPUT) ? [from] : [];
          return value(name, go, `${name}-${index}`);
        })}
      </ul>
      <h4 className="h4">Outputs</h4>
      <ul className="graph-values">
        {node.out.map((name, index) => value(name, (consumers.get(name) ?? []).slice(0, 3), `${name}-${index}`))}
      </ul>
    </>
  );
}
