// A scatter plot of labelled points, told apart by colour AND marker shape, with an optional
// front (the points nothing beats on both axes) drawn as a dashed line, and the numbers as a
// table. At most 420 wide, and as wide as its box below that (like the other charts), so its
// text shows at the size it is drawn at on a phone.
import { useId, type ReactNode } from "react";
import { formatTick } from "../lib/format";
import {
  AxisTitle,
  axisTitleLines,
  labelledTicks,
  Legend,
  Marker,
  TITLE_LINE,
  useChartWidth,
  yTitleMiddle,
} from "./Charts";
import { fitText, textWidth } from "./measure";
import { linearScale, logScale } from "./scales";

const W = 420;
const H = 320;
const M = { top: 16, right: 18, bottom: 50, left: 56 };

export interface ScatterPoint {
  key: string;
  x: number;
  y: number;
  /** Colour, marker and legend entry. */
  group: string;
  /** Shown on the point's tooltip and, for points on the front, beside it. */
  label: string;
  /** A longer description for the tooltip. */
  title: string;
  /** Drawn bigger, ringed. */
  emphasis?: boolean;
}

export interface ScatterGroup {
  name: string;
  color: string;
  marker: string;
}

export function ScatterChart({
  title,
  description,
  points,
  groups,
  front = [],
  xLabel,
  yLabel,
  xLog = false,
  xFormat = formatTick,
  yFormat = formatTick,
  frontLabel = "Pareto front",
  table,
}: {
  title: string;
  description: string;
  points: ScatterPoint[];
  groups: ScatterGroup[];
  /** Keys of the points on the front, in the order the line joins them. */
  front?: string[];
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
  frontLabel?: string;
  /** The numbers as a table, behind a disclosure; none where they are shown beside the plot. */
  table?: ReactNode;
}) {
  const id = useId();
  const [measure, width] = useChartWidth(W);
  const xTitle = axisTitleLines(xLabel, width, M.left, M.right);
  const bottom = H - M.bottom - (xTitle.length - 1) * TITLE_LINE;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const xRange: [number, number] = [M.left + 12, width - M.right - 12];
  const x = xLog ? logScale(xs, xRange) : linearScale(xs, xRange);
  const y = linearScale(ys, [bottom, M.top]);
  const labelled = labelledTicks(x, xFormat, 13, [0, width]);
  const byKey = new Map(points.map((p) => [p.key, p]));
  const frontPoints = front.map((key) => byKey.get(key)).filter((p): p is ScatterPoint => p !== undefined);
  const style = new Map(groups.map((g) => [g.name, g]));
  const used = groups.filter((g) => points.some((p) => p.group === g.name));
  const legend = [
    ...used.map((g) => ({ name: g.name, color: g.color, marker: g.marker })),
    ...(frontPoints.length > 1 ? [{ name: frontLabel, color: "#6e7781", marker: "none", dash: "5 3" }] : []),
  ];
  return (
    <figure className="chart chart-scatter" aria-labelledby={`${id}-t`} ref={measure}>
      <figcaption id={`${id}-t`} className="chart-title">
        {title}
      </figcaption>
      <svg
        viewBox={`0 0 ${width} ${H}`}
        role="img"
        aria-labelledby={`${id}-t ${id}-d`}
        className="chart-svg"
        preserveAspectRatio="xMidYMid meet"
      >
        <desc id={`${id}-d`}>{description}</desc>
        <g className="axes" fontSize="13">
          {y.ticks.map((tick) => (
            <g key={`y${tick}`}>
              <line x1={M.left} x2={width - M.right} y1={y(tick)} y2={y(tick)} className="grid" />
              <text x={M.left - 6} y={y(tick)} dy="0.32em" textAnchor="end" className="tick">
                {yFormat(tick)}
              </text>
            </g>
          ))}
          {x.ticks.map((tick) => (
            <g key={`x${tick}`}>
              <line x1={x(tick)} x2={x(tick)} y1={M.top} y2={bottom} className="grid" />
              {labelled.has(tick) ? (
                <text x={labelled.get(tick)} y={bottom + 17} textAnchor="middle" className="tick">
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
        {frontPoints.length > 1 ? (
          <polyline
            className="pareto-front"
            fill="none"
            stroke="#6e7781"
            strokeWidth={1.5}
            strokeDasharray="5 3"
            points={frontPoints.map((p) => `${x(p.x)},${y(p.y)}`).join(" ")}
          />
        ) : null}
        {points.map((p) => {
          const g = style.get(p.group);
          const color = g?.color ?? "#444444";
          const onFront = frontPoints.includes(p);
          const px = x(p.x);
          // a front point's label goes to the side with room for it, cut to fit there
          const room = { left: px - 14, right: width - px - 14 };
          const toLeft = textWidth(p.label, 12) > room.right && room.left > room.right;
          const shown = fitText(p.label, Math.min(160, toLeft ? room.left : room.right), 12);
          // above the point, or below it where the top of the chart is too near
          const labelY = y(p.y) - 8 < 14 ? y(p.y) + 18 : y(p.y) - 8;
          return (
            <g key={p.key} className="scatter-point" data-point={p.key} data-front={onFront ? "yes" : undefined}>
              {p.emphasis ? <circle cx={px} cy={y(p.y)} r={9} fill="none" stroke={color} strokeWidth={1.5} /> : null}
              <Marker shape={g?.marker ?? "circle"} x={px} y={y(p.y)} color={color} size={p.emphasis ? 5.5 : 4.5} />
              {onFront ? (
                <text
                  x={px + (toLeft ? -10 : 10)}
                  y={labelY}
                  textAnchor={toLeft ? "end" : "start"}
                  fontSize="12"
                  className="tick"
                >
                  {shown}
                </text>
              ) : null}
              <title>{p.title}</title>
            </g>
          );
        })}
      </svg>
      <Legend items={legend} />
      {table ? (
        <details className="chart-data">
          <summary>Numbers as a table</summary>
          <div className="table-scroll" tabIndex={0}>
            {table}
          </div>
        </details>
      ) : null}
    </figure>
  );
}
