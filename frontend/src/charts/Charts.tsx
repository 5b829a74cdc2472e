// Small SVG charts drawn by hand: a fixed height so nothing moves when data changes, axes with
// units, series told apart by colour AND marker shape AND dash, and each chart's numbers
// available as a table for people who can't see it.
import { useCallback, useId, useState, type ReactNode, type RefCallback } from "react";
import { formatMs, formatTick } from "../lib/format";
import type { Histogram, Interval, PercentileRow, Series } from "./series";
import { PERCENTILES } from "./series";
import { CHAR_EM, fitText, textWidth, wrapToWidth } from "./measure";
import { linearScale, logScale, pointScale, type Scale } from "./scales";

// Okabe-Ito-derived palette: distinguishable for the common colour-vision deficiencies.
export const PALETTE = [
  "#0072B2",
  "#D55E00",
  "#009E73",
  "#CC79A7",
  "#E69F00",
  "#56B4E9",
  "#8C564B",
  "#332288",
  "#999933",
  "#882255",
];
const MARKERS = ["circle", "square", "triangle", "diamond", "cross"] as const;
const DASHES = ["", "6 3", "2 3", "8 3 2 3"];

// Drawn at the width they are shown, up to W (a wider box scales the drawing up). A fixed
// viewBox would scale a phone's 330 px chart down by half, its 13 px text to 7 px.
const W = 600;
const H = 320;
const M = { top: 18, right: 22, bottom: 52, left: 68 };
/** Below this a chart is scaled down rather than drawn narrower: its plot would be too cramped. */
const NARROWEST = 260;
const TITLE_PX = 14;
/** The distance between the lines of an axis title. */
export const TITLE_LINE = 16;

/** A callback ref for a chart's box, and the width to draw the chart at: the box's width in
 * CSS pixels, kept within [NARROWEST, widest]. Where nothing can measure it (tests), `widest`. */
export function useChartWidth(widest: number): [RefCallback<HTMLElement>, number] {
  const [width, setWidth] = useState(widest);
  const measure = useCallback(
    (box: HTMLElement | null) => {
      if (!box || typeof ResizeObserver === "undefined") return;
      // a hidden box measures 0: keep the last width
      const fit = (shown: number) => {
        if (shown > 0) setWidth(Math.round(Math.min(widest, Math.max(NARROWEST, shown))));
      };
      fit(box.getBoundingClientRect().width); // before the first paint, so the chart doesn't jump
      const observer = new ResizeObserver(([entry]) => {
        if (entry) fit(entry.contentRect.width);
      });
      observer.observe(box);
      return () => observer.disconnect();
    },
    [widest],
  );
  return [measure, width];
}

/** The x axis title's lines for a chart `width` wide whose plot runs from `left` to `width - right`. */
export function axisTitleLines(text: string, width: number, left = M.left, right = M.right): string[] {
  // centred on the plot, so it has twice the room on its narrower side
  const room = 2 * Math.min((left + width - right) / 2, (width - left + right) / 2) - 8;
  return wrapToWidth(text, Math.max(12 * TITLE_PX * CHAR_EM, room), TITLE_PX, 600);
}

/** The ticks of a horizontal axis whose labels fit side by side at `fontSize` px, each with the
 * x its label is centred on: on a log axis the powers of ten first, then the others wherever they
 * don't touch a label already placed. A label that would run past `edges` (the chart's sides)
 * moves inward, so it is not cut off; its tick mark still shows the exact place. */
export function labelledTicks(
  scale: Scale,
  format: (v: number) => string,
  fontSize = 13,
  edges: [number, number] = [-Infinity, Infinity],
): Map<number, number> {
  const first = scale.log ? scale.ticks.filter((t) => Number.isInteger(Math.log10(t))) : scale.ticks;
  const placed: [number, number][] = [];
  const shown = new Map<number, number>();
  for (const tick of [...first, ...scale.ticks.filter((t) => !first.includes(t))]) {
    const half = textWidth(format(tick), fontSize) / 2 + 3;
    const at = Math.min(Math.max(scale(tick), edges[0] + half), edges[1] - half);
    if (placed.every(([from, to]) => at + half <= from || at - half >= to)) {
      placed.push([at - half, at + half]);
      shown.set(tick, at);
    }
  }
  return shown;
}

/** Where the y axis title's middle goes: beside the middle of the plot (`top` to `bottom`),
 * moved down where a long title would run off the top of a chart `height` tall. */
export function yTitleMiddle(text: string, top: number, bottom: number, height: number): number {
  const half = textWidth(text, TITLE_PX, 600) / 2 + 2;
  return Math.min(Math.max((top + bottom) / 2, half), height - half);
}

/** An x axis title, one <text> with a line per <tspan>, its last line `bottom` units down. */
export function AxisTitle({ lines, x, bottom }: { lines: string[]; x: number; bottom: number }) {
  return (
    <text x={x} y={bottom - (lines.length - 1) * TITLE_LINE} textAnchor="middle" className="axis-title">
      {lines.map((line, i) => (
        <tspan key={i} x={x} dy={i ? TITLE_LINE : 0}>
          {line}
        </tspan>
      ))}
    </text>
  );
}

/** A 95% interval as "[low – high]" in the figure's own unit; "" where there is none. */
export function formatInterval(interval: Interval | null | undefined, format: (v: number) => string): string {
  return interval ? `[${format(interval[0])} – ${format(interval[1])}]` : "";
}

/** An error bar: a line from `from` to `to` with caps, horizontal or vertical. */
function Whisker({
  from,
  to,
  at,
  color,
  vertical = false,
}: {
  from: number;
  to: number;
  at: number;
  color: string;
  vertical?: boolean;
}) {
  const cap = 3.5;
  const d = vertical
    ? `M${at},${from}V${to}M${at - cap},${from}H${at + cap}M${at - cap},${to}H${at + cap}`
    : `M${from},${at}H${to}M${from},${at - cap}V${at + cap}M${to},${at - cap}V${at + cap}`;
  return <path d={d} stroke={color} strokeWidth={1.5} fill="none" className="whisker" />;
}

export function seriesStyle(index: number, baseline: boolean) {
  return {
    color: baseline ? "#444444" : (PALETTE[index % PALETTE.length] as string),
    marker: baseline ? ("cross" as const) : (MARKERS[index % (MARKERS.length - 1)] ?? "circle"),
    dash: baseline ? "4 4" : (DASHES[Math.floor(index / PALETTE.length) % DASHES.length] as string),
  };
}

export function Marker({
  shape,
  x,
  y,
  color,
  size = 4.5,
}: {
  shape: string;
  x: number;
  y: number;
  color: string;
  size?: number;
}) {
  switch (shape) {
    case "none": // a line's legend entry without a marker
      return null;
    case "square":
      return <rect x={x - size} y={y - size} width={size * 2} height={size * 2} fill={color} />;
    case "triangle":
      return (
        <path
          d={`M${x},${y - size * 1.2}L${x + size * 1.1},${y + size * 0.9}L${x - size * 1.1},${y + size * 0.9}Z`}
          fill={color}
        />
      );
    case "diamond":
      return (
        <path d={`M${x},${y - size * 1.3}L${x + size},${y}L${x},${y + size * 1.3}L${x - size},${y}Z`} fill={color} />
      );
    case "cross":
      return (
        <path
          d={`M${x - size},${y - size}L${x + size},${y + size}M${x - size},${y + size}L${x + size},${y - size}`}
          stroke={color}
          strokeWidth={2}
        />
      );
    default:
      return <circle cx={x} cy={y} r={size} fill={color} />;
  }
}

/** Where a chart `width` wide draws its plot, and its x axis title broken to fit. */
function plotArea(width: number, xLabel: string) {
  const xTitle = axisTitleLines(xLabel, width);
  return { xTitle, bottom: H - M.bottom - (xTitle.length - 1) * TITLE_LINE, right: width - M.right };
}

function Axes({
  x,
  y,
  xTitle,
  yLabel,
  xFormat = formatTick,
  yFormat = formatTick,
  width,
  bottom,
}: {
  x: Scale;
  y: Scale;
  xTitle: string[];
  yLabel: string;
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
  width: number;
  /** The plot's bottom edge. */
  bottom: number;
}) {
  const labelled = labelledTicks(x, xFormat, 13, [0, width]);
  return (
    <g className="axes" fontSize="13">
      {y.ticks.map((tick) => (
        <g key={`y${tick}`}>
          <line x1={M.left} x2={width - M.right} y1={y(tick)} y2={y(tick)} className="grid" />
          <text x={M.left - 8} y={y(tick)} dy="0.32em" textAnchor="end" className="tick">
            {yFormat(tick)}
          </text>
        </g>
      ))}
      {x.ticks.map((tick) => (
        <g key={`x${tick}`}>
          <line x1={x(tick)} x2={x(tick)} y1={bottom} y2={bottom + 5} className="axis" />
          {labelled.has(tick) ? (
            <text x={labelled.get(tick)} y={bottom + 18} textAnchor="middle" className="tick">
              {xFormat(tick)}
            </text>
          ) : null}
        </g>
      ))}
      <line x1={M.left} x2={width - M.right} y1={bottom} y2={bottom} className="axis" />
      <line x1={M.left} x2={M.left} y1={M.top} y2={bottom} className="axis" />
      <AxisTitle lines={xTitle} x={(M.left + width - M.right) / 2} bottom={H - 8} />
      <text
        transform={`translate(14 ${yTitleMiddle(yLabel, M.top, bottom, H)}) rotate(-90)`}
        textAnchor="middle"
        className="axis-title"
      >
        {yLabel}
      </text>
    </g>
  );
}

export function Legend({ items }: { items: { name: string; color: string; marker: string; dash?: string }[] }) {
  return (
    <ul className="legend">
      {items.map((item) => (
        <li key={item.name}>
          <svg width="28" height="14" aria-hidden="true" focusable="false">
            <line x1="1" x2="27" y1="7" y2="7" stroke={item.color} strokeWidth="2" strokeDasharray={item.dash} />
            <Marker shape={item.marker} x={14} y={7} color={item.color} size={4} />
          </svg>
          {item.name}
        </li>
      ))}
    </ul>
  );
}

function Frame({
  title,
  description,
  children,
  table,
  measure,
  width,
  height = H,
  legend,
}: {
  title: string;
  description: string;
  children: ReactNode;
  table: ReactNode;
  /** useChartWidth's ref, for the box whose width the chart is drawn at. */
  measure: RefCallback<HTMLElement>;
  width: number;
  height?: number;
  legend?: ReactNode;
}) {
  const id = useId();
  return (
    <figure className="chart" ref={measure}>
      <figcaption id={`${id}-t`} className="chart-title">
        {title}
      </figcaption>
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-labelledby={`${id}-t ${id}-d`}
        className="chart-svg"
        preserveAspectRatio="xMidYMid meet"
      >
        <desc id={`${id}-d`}>{description}</desc>
        {children}
      </svg>
      {legend}
      <details className="chart-data">
        <summary>Numbers as a table</summary>
        <div className="table-scroll" tabIndex={0}>
          {table}
        </div>
      </details>
    </figure>
  );
}

export interface LineChartProps {
  title: string;
  description: string;
  series: Series[];
  xLabel: string;
  yLabel: string;
  /** "points": evenly spaced measured values (batch sizes); "linear" otherwise. */
  xMode?: "points" | "linear";
  yLog?: boolean;
  yFormat?: (v: number) => string;
  valueFormat: (v: number) => string;
  xName: string;
}

export function LineChart({
  title,
  description,
  series,
  xLabel,
  yLabel,
  xMode = "points",
  yLog = false,
  yFormat = formatTick,
  valueFormat,
  xName,
}: LineChartProps) {
  const [measure, width] = useChartWidth(W);
  const { xTitle, bottom, right } = plotArea(width, xLabel);
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  // The y axis holds the intervals too, so no error bar runs off the plot.
  const ys = series.flatMap((s) => s.points.flatMap((p) => [p.y, p.low ?? p.y, p.high ?? p.y]));
  const range: [number, number] = [M.left + 24, right - 24];
  const x = xMode === "points" ? pointScale(xs, range) : linearScale(xs, range);
  const y = yLog ? logScale(ys, [bottom, M.top]) : linearScale(ys, [bottom, M.top], { zero: true });
  let variantIndex = 0;
  const styled = series.map((s) => ({ ...s, style: seriesStyle(s.baseline ? 0 : variantIndex++, s.baseline) }));
  const xValues = [...new Set(xs)].sort((a, b) => a - b);
  return (
    <Frame
      title={title}
      description={description}
      measure={measure}
      width={width}
      legend={<Legend items={styled.map((s) => ({ name: s.name, ...s.style }))} />}
      table={
        <table className="table table-compact">
          <thead>
            <tr>
              <th scope="col">Variant</th>
              {xValues.map((v) => (
                <th scope="col" key={v} className="num">
                  {xName} {v}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {styled.map((s) => (
              <tr key={s.name}>
                <th scope="row">{s.name}</th>
                {xValues.map((v) => {
                  const point = s.points.find((p) => p.x === v);
                  const interval: Interval | null =
                    point?.low !== undefined && point.high !== undefined ? [point.low, point.high] : null;
                  return (
                    <td key={v} className="num">
                      {point ? valueFormat(point.y) : "—"}
                      {interval ? <span className="muted small"> {formatInterval(interval, valueFormat)}</span> : null}
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      }
    >
      <Axes x={x} y={y} xTitle={xTitle} yLabel={yLabel} yFormat={yFormat} width={width} bottom={bottom} />
      {styled.map((s) => (
        <g key={s.name} className="series">
          {s.points.length > 1 ? (
            <polyline
              fill="none"
              stroke={s.style.color}
              strokeWidth={s.baseline ? 1.5 : 2}
              strokeDasharray={s.style.dash}
              points={s.points.map((p) => `${x(p.x)},${y(p.y)}`).join(" ")}
            />
          ) : null}
          {s.points.map((p) => {
            const interval: Interval | null = p.low !== undefined && p.high !== undefined ? [p.low, p.high] : null;
            return (
              <g key={p.x}>
                {interval ? (
                  <Whisker from={y(interval[0])} to={y(interval[1])} at={x(p.x)} color={s.style.color} vertical />
                ) : null}
                <Marker shape={s.style.marker} x={x(p.x)} y={y(p.y)} color={s.style.color} />
                <title>
                  {`${s.name}: ${valueFormat(p.y)}${interval ? ` ${formatInterval(interval, valueFormat)}` : ""} at ${xName.toLowerCase()} ${p.x}`}
                </title>
              </g>
            );
          })}
        </g>
      ))}
    </Frame>
  );
}

/** One row per variant: markers at p50 .. p99.9 on a log latency axis, joined by a line, with
 * a bar for each 95% interval the report gives (p50, p99, p99.9). */
export function PercentileChart({
  rows,
  title,
  description,
}: {
  rows: PercentileRow[];
  title: string;
  description: string;
}) {
  const [measure, width] = useChartWidth(W);
  // On a narrow chart each variant's name goes above its row, so the plot keeps the whole width.
  const namesAbove = width < 400;
  const rowHeight = namesAbove ? 50 : 30;
  const left = namesAbove ? 16 : 150;
  // room for a variant's name: the plot's width above its row, or the margin left of it
  const nameRoom = namesAbove ? width - left - M.right : left - 14;
  const xTitle = axisTitleLines("Latency (ms, log scale)", width, left);
  const bottomMargin = M.bottom + (xTitle.length - 1) * TITLE_LINE;
  const height = Math.max(H, M.top + rows.length * rowHeight + bottomMargin);
  const values = rows.flatMap((r) => [
    ...Object.values(r.values).filter((v): v is number => v !== null),
    ...Object.values(r.intervals).flat(),
  ]);
  const x = logScale(values, [left, width - M.right]);
  const labelled = labelledTicks(x, formatTick, 13, [0, width]);
  const colors = ["#0072B2", "#009E73", "#E69F00", "#D55E00", "#882255"];
  const shapes = ["circle", "square", "triangle", "diamond", "cross"];
  const bottom = height - bottomMargin;
  return (
    <Frame
      title={title}
      description={description}
      measure={measure}
      width={width}
      height={height}
      legend={
        <Legend
          items={PERCENTILES.map((p, i) => ({
            name: p.label,
            color: colors[i] as string,
            marker: shapes[i] as string,
          }))}
        />
      }
      table={
        <table className="table table-compact">
          <thead>
            <tr>
              <th scope="col">Variant</th>
              {PERCENTILES.map((p) => (
                <th scope="col" key={p.key} className="num">
                  {p.label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.name}>
                <th scope="row">{row.name}</th>
                {PERCENTILES.map((p) => {
                  const note = row.notes[p.key];
                  return (
                    <td key={p.key} className="num">
                      {row.values[p.key] === null && note ? (
                        <span className="muted small" title={note}>
                          {shortNote(note)}
                        </span>
                      ) : (
                        formatMs(row.values[p.key])
                      )}
                      {row.intervals[p.key] ? (
                        <span className="muted small"> {formatInterval(row.intervals[p.key], formatMs)}</span>
                      ) : null}
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      }
    >
      <g className="axes" fontSize="13">
        {x.ticks.map((tick) => (
          <g key={tick}>
            <line x1={x(tick)} x2={x(tick)} y1={M.top} y2={bottom} className="grid" />
            {labelled.has(tick) ? (
              <text x={labelled.get(tick)} y={bottom + 18} textAnchor="middle" className="tick">
                {formatTick(tick)}
              </text>
            ) : null}
          </g>
        ))}
        <line x1={left} x2={width - M.right} y1={bottom} y2={bottom} className="axis" />
        <AxisTitle lines={xTitle} x={(left + width - M.right) / 2} bottom={height - 8} />
      </g>
      {rows.map((row, index) => {
        const cy =
          M.top + index * rowHeight + rowHeight / 2 + (height - M.top - bottomMargin - rows.length * rowHeight) / 2;
        const present = PERCENTILES.map((p) => row.values[p.key]).filter((v): v is number => v !== null);
        return (
          <g key={row.name}>
            <text
              x={namesAbove ? left : left - 10}
              y={namesAbove ? cy - 17 : cy}
              dy={namesAbove ? undefined : "0.32em"}
              textAnchor={namesAbove ? "start" : "end"}
              fontSize="13"
              className={row.baseline ? "tick tick-strong" : "tick"}
            >
              {fitText(row.name, nameRoom, 13, row.baseline ? 700 : 400)}
            </text>
            {present.length > 1 ? (
              <line
                x1={x(Math.min(...present))}
                x2={x(Math.max(...present))}
                y1={cy}
                y2={cy}
                stroke="#9aa3ad"
                strokeWidth={2}
              />
            ) : null}
            {PERCENTILES.map((p, i) => {
              const value = row.values[p.key];
              if (value === null) return null;
              const interval = row.intervals[p.key];
              // p50's bar above the row's line, the tail's below, so neither hides the other.
              const offset = p.key === "p50_ms" ? -9 : p.key === "p99_ms" ? 6 : 12;
              return (
                <g key={p.key}>
                  {interval && interval[0] > 0 ? (
                    <Whisker from={x(interval[0])} to={x(interval[1])} at={cy + offset} color={colors[i] as string} />
                  ) : null}
                  <Marker shape={shapes[i] as string} x={x(value)} y={cy} color={colors[i] as string} size={5} />
                  <title>{`${row.name} ${p.label}: ${formatMs(value)}${interval ? ` ${formatInterval(interval, formatMs)}` : ""}`}</title>
                </g>
              );
            })}
          </g>
        );
      })}
    </Frame>
  );
}

/** "not enough samples (180) for p99: it needs ..." -> "not enough samples (180)". */
export function shortNote(note: string): string {
  const match = /^not enough samples \([\d,]+\)/.exec(note);
  return match ? match[0] : note;
}

export function HistogramChart({
  data,
  title,
  description,
  marks,
}: {
  data: Histogram;
  title: string;
  description: string;
  marks: { label: string; value: number | null }[];
}) {
  const [measure, width] = useChartWidth(W);
  const xLabel = data.log ? "Latency (ms, log scale)" : "Latency (ms)";
  const { xTitle, bottom, right } = plotArea(width, xLabel);
  const range: [number, number] = [M.left, right];
  const edges = data.bins.flatMap((b) => [b.x0, b.x1]);
  const x = data.log ? logScale(edges, range) : linearScale(edges, range);
  const y = linearScale(
    data.bins.map((b) => b.count),
    [bottom, M.top],
    { zero: true },
  );
  return (
    <Frame
      title={title}
      description={description}
      measure={measure}
      width={width}
      table={
        <table className="table table-compact">
          <thead>
            <tr>
              <th scope="col">From</th>
              <th scope="col">To</th>
              <th scope="col" className="num">
                Requests
              </th>
            </tr>
          </thead>
          <tbody>
            {data.bins.map((bin) => (
              <tr key={bin.x0}>
                <td>{formatMs(bin.x0)}</td>
                <td>{formatMs(bin.x1)}</td>
                <td className="num">{bin.count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      }
    >
      <Axes x={x} y={y} xTitle={xTitle} yLabel="Requests" width={width} bottom={bottom} />
      {data.bins.map((bin) => (
        <rect
          key={bin.x0}
          x={x(bin.x0) + 0.5}
          y={y(bin.count)}
          width={Math.max(1, x(bin.x1) - x(bin.x0) - 1)}
          height={Math.max(0, bottom - y(bin.count))}
          fill="#56B4E9"
          stroke="#0072B2"
          strokeWidth={0.5}
        >
          <title>{`${formatMs(bin.x0)} – ${formatMs(bin.x1)}: ${bin.count} requests`}</title>
        </rect>
      ))}
      {marks.map((mark, i) => {
        if (mark.value === null) return null;
        const label = `${mark.label} ${formatMs(mark.value)}`;
        const at = x(mark.value);
        // beside the line on the side with room for the label
        const toLeft = at + 4 + textWidth(label, 13, 600) > width - 2;
        return (
          <g key={mark.label}>
            <line
              x1={at}
              x2={at}
              y1={M.top}
              y2={bottom}
              stroke="#D55E00"
              strokeWidth={1.5}
              strokeDasharray={i ? "5 3" : ""}
            />
            <text
              x={at + (toLeft ? -4 : 4)}
              y={M.top + 12 + i * 16}
              fontSize="13"
              textAnchor={toLeft ? "end" : "start"}
              className="mark-label"
            >
              {label}
            </text>
          </g>
        );
      })}
    </Frame>
  );
}
