// The benchmark figures and plots: each run's latency, CPU time and throughput with their 95%
// intervals and sample counts, what inputs the timings rest on, latency percentiles per
// variant, latency against batch size, throughput against concurrency, and one variant's
// latency distribution from its raw samples. Controls choose the batch size / concurrency each
// figure is cut at. Every p50/p99 shown is the report's own (the point's p50_ms / p99_ms), so
// the table, the charts and the histogram can't disagree.
import { useEffect, useId, useMemo, useState } from "react";
import type { BenchmarkReport, EvidenceInputs } from "../api/reports";
import { formatInterval, HistogramChart, LineChart, PercentileChart, shortNote } from "../charts/Charts";
import {
  BASELINE,
  failedRuns,
  figureRows,
  histogram,
  latencyByBatch,
  measuredRuns,
  measuredSweep,
  PERCENTILES,
  percentileRows,
  pointAt,
  samplesAt,
  throughputByConcurrency,
  type Estimate,
  type FigureRow,
  type PercentileKey,
} from "../charts/series";
import { Empty, Notice } from "../components/ui";
import { formatMs, formatRate } from "../lib/format";
import { AssumptionList } from "./Assumptions";

function Select<T extends string | number>({
  label,
  value,
  options,
  onChange,
  format = String,
}: {
  label: string;
  value: T;
  options: T[];
  onChange: (v: T) => void;
  format?: (v: T) => string;
}) {
  const id = useId();
  return (
    <div className="field field-inline">
      <label htmlFor={id}>{label}</label>
      <select
        id={id}
        className="input input-small"
        value={String(value)}
        onChange={(e) => {
          const raw = e.target.value;
          const found = options.find((o) => String(o) === raw);
          if (found !== undefined) onChange(found);
        }}
      >
        {options.map((o) => (
          <option key={String(o)} value={String(o)}>
            {format(o)}
          </option>
        ))}
      </select>
    </div>
  );
}

/** A count in full ("1,050"): how many samples a figure rests on is not a figure to round. */
function formatSamples(value: number | null): string {
  return value === null ? "—" : value.toLocaleString("en-US");
}

/** A figure over its interval, or why there is no figure; "no interval" for older reports. */
function Figure({ estimate, format }: { estimate: Estimate; format: (v: number) => string }) {
  if (estimate.value === null) {
    if (!estimate.note) return <>—</>;
    const needed = /needs at least ([\d,]+)/.exec(estimate.note)?.[1];
    return (
      <span title={estimate.note}>
        {shortNote(estimate.note)}
        {needed ? <span className="muted small figure-interval">; it needs at least {needed}</span> : null}
      </span>
    );
  }
  return (
    <>
      {format(estimate.value)}{" "}
      <span className="muted small figure-interval">
        {estimate.interval ? formatInterval(estimate.interval, format) : "no interval"}
      </span>
    </>
  );
}

function FiguresTable({
  rows,
  batch,
  concurrency,
  recommended,
}: {
  rows: FigureRow[];
  batch: number;
  concurrency: number;
  recommended?: string | undefined;
}) {
  return (
    <div className="table-scroll" tabIndex={0}>
      <table className="table table-compact benchmark-figures">
        <caption>
          Batch {batch}, concurrency {concurrency}: each figure with its 95% interval in brackets
        </caption>
        <thead>
          <tr>
            <th scope="col">Variant</th>
            <th scope="col" className="num">
              p50
            </th>
            <th scope="col" className="num">
              p99
            </th>
            <th scope="col" className="num">
              p99.9
            </th>
            <th scope="col" className="num">
              CPU time per inference
            </th>
            <th scope="col" className="num">
              Throughput
            </th>
            <th scope="col" className="num">
              Samples
            </th>
            <th scope="col" className="num">
              Trials
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={row.name} data-variant={row.name}>
              <th scope="row" className="mono">
                {row.name}
                {row.name === recommended ? <span className="muted small"> (recommended)</span> : null}
              </th>
              <td className="num">
                <Figure estimate={row.p50} format={formatMs} />
              </td>
              <td className="num">
                <Figure estimate={row.p99} format={formatMs} />
              </td>
              <td className="num">
                <Figure estimate={row.p99_9} format={formatMs} />
              </td>
              <td className="num">
                <Figure estimate={row.cpu} format={formatMs} />
              </td>
              <td className="num">
                <Figure estimate={row.throughput} format={formatRate} />
              </td>
              <td className="num">{formatSamples(row.samples)}</td>
              <td className="num">{row.trials ?? "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/**
 * How the intervals were obtained. The engine words it per point, with that point's request
 * count; runs measured alike (same wording but for the numbers) share one line.
 */
function IntervalMethods({ rows }: { rows: FigureRow[] }) {
  const groups = new Map<string, { names: string[]; method: string }>();
  for (const row of rows) {
    if (!row.method) continue;
    const key = row.method.replace(/\d[\d,.]*/g, "#");
    const group = groups.get(key);
    if (group) group.names.push(row.name);
    else groups.set(key, { names: [row.name], method: row.method });
  }
  if (!groups.size) {
    return (
      <p className="muted small">
        This report has no confidence intervals: it was measured before Slipway computed them. Run the pipeline again to
        get them.
      </p>
    );
  }
  const listed = [...groups.values()];
  if (listed.length === 1 && listed[0]) {
    const { names, method } = listed[0];
    return (
      <p className="muted small interval-method">
        How the intervals were obtained: {method}
        {names.length > 1 ? ` (worded for ${names[0]}; each run's own count is in the Samples column)` : ""}.
      </p>
    );
  }
  return (
    <div className="muted small interval-method">
      How the intervals were obtained:
      <ul>
        {listed.map(({ names, method }) => (
          <li key={names.join(",")}>
            <strong>{names.join(", ")}</strong>: {method}
          </li>
        ))}
      </ul>
    </div>
  );
}

/** What the timings were measured on: the user's samples or generated inputs, and how made. */
function TimedOn({ inputs }: { inputs: EvidenceInputs | undefined }) {
  if (!inputs || (!inputs.description && !inputs.source)) {
    return (
      <p className="muted small">
        This report does not say which inputs the timings were measured on: it was made before Slipway recorded that.
      </p>
    );
  }
  const source = inputs.source || "inputs";
  // The plan's description starts "generated: ..."; after "generated inputs" that says it twice.
  const description = (inputs.description ?? "").replace(/^generated:\s*/, "");
  return (
    <div className="timed-on">
      <p>
        <strong>Timed on {source}</strong>
        {description ? `: ${description}.` : "."}
      </p>
      {inputs.assumptions?.length ? (
        <>
          <p className="muted small">What Slipway assumed, and what to declare at upload if it is wrong:</p>
          <AssumptionList items={inputs.assumptions} label="What the timings' inputs assumed" />
        </>
      ) : null}
    </div>
  );
}

export function Benchmarks({
  report,
  recommended,
}: {
  report: BenchmarkReport | undefined;
  recommended?: string | undefined;
}) {
  const sweep = useMemo(() => measuredSweep(report), [report]);
  const runs = useMemo(() => measuredRuns(report), [report]);
  const [batch, setBatch] = useState<number>(sweep.batchSizes[0] ?? 1);
  const [concurrency, setConcurrency] = useState<number>(sweep.concurrencies[0] ?? 1);
  const [percentile, setPercentile] = useState<PercentileKey>("p99_ms");
  const names = runs.map((r) => r.name);
  const [variant, setVariant] = useState<string>(
    recommended && names.includes(recommended) ? recommended : (names.find((n) => n !== BASELINE) ?? BASELINE),
  );
  useEffect(() => {
    if (!sweep.batchSizes.includes(batch) && sweep.batchSizes[0] !== undefined) setBatch(sweep.batchSizes[0]);
    if (!sweep.concurrencies.includes(concurrency) && sweep.concurrencies[0] !== undefined)
      setConcurrency(sweep.concurrencies[0]);
  }, [sweep, batch, concurrency]);
  useEffect(() => {
    if (names.length && !names.includes(variant))
      setVariant(recommended && names.includes(recommended) ? recommended : (names[0] as string));
  }, [names, variant, recommended]);

  if (!report)
    return (
      <Empty title="Not benchmarked yet.">
        The benchmark step measures every variant and the original model on this profile's worker.
      </Empty>
    );
  if (!runs.length) {
    return (
      <Empty title="No measurements.">
        {failedRuns(report).map((f) => (
          <p key={f.name}>
            <strong>{f.name}</strong>: {f.reason}
          </p>
        ))}
      </Empty>
    );
  }
  const rows = percentileRows(report, batch, concurrency);
  const figures = figureRows(report, batch, concurrency);
  const byBatch = latencyByBatch(report, concurrency, percentile);
  const byConcurrency = throughputByConcurrency(report, batch);
  const samples = samplesAt(report, variant, batch, concurrency);
  const selectedRun = variant === BASELINE ? report.baseline : report.variants[variant];
  const selected = selectedRun ? pointAt(selectedRun, batch, concurrency) : undefined;
  // The requests the figures rest on; `samples_ms` keeps a thinned subset of them to draw.
  const requests = selected?.samples ?? selected?.requests ?? samples.length;
  const p99Note = selected && selected.p99_ms === null ? (selected.p99_note ?? null) : null;
  const hist = histogram(samples, 36);
  const pLabel = PERCENTILES.find((p) => p.key === percentile)?.label ?? "p99";
  const notes = [
    ...new Set([...(report.baseline?.notes ?? []), ...Object.values(report.variants).flatMap((v) => v.notes ?? [])]),
  ].filter((n) => !n.startsWith("No GPU memory"));
  const failures = failedRuns(report);

  return (
    <div className="benchmarks">
      <p className="muted small">
        Measured on {machine(report)}. "original" is the uploaded model in plain{" "}
        {report.baseline?.backend ?? "onnxruntime"}.
      </p>
      {report.measured_on?.emulation ? (
        <Notice kind="warn" title="Emulated: not representative of the device">
          These timings were measured under {report.measured_on.emulation}. Op support and parity come from the
          runtimes&apos; {report.measured_on.arch} builds; the recommendation ranks by accuracy and size only.
        </Notice>
      ) : null}
      <TimedOn inputs={report.inputs} />
      <div className="toolbar">
        <Select label="Batch size" value={batch} options={sweep.batchSizes} onChange={setBatch} />
        <Select label="Concurrency" value={concurrency} options={sweep.concurrencies} onChange={setConcurrency} />
        <Select
          label="Latency percentile"
          value={percentile}
          options={PERCENTILES.map((p) => p.key)}
          onChange={(v) => setPercentile(v as PercentileKey)}
          format={(v) => PERCENTILES.find((p) => p.key === v)?.label ?? String(v)}
        />
      </div>
      <FiguresTable rows={figures} batch={batch} concurrency={concurrency} recommended={recommended} />
      <IntervalMethods rows={figures} />
      <div className="charts">
        <PercentileChart
          rows={rows}
          title={`Latency percentiles per variant (batch ${batch}, concurrency ${concurrency})`}
          description={`For each variant, the p50, p90, p95, p99 and p99.9 latency in milliseconds at batch ${batch} and concurrency ${concurrency}, fastest p99 first.`}
        />
        {sweep.batchSizes.length > 1 ? (
          <LineChart
            title={`${pLabel} latency vs batch size (concurrency ${concurrency})`}
            description={`${pLabel} latency in milliseconds for each measured batch size, one line per variant.`}
            series={byBatch}
            xLabel="Batch size"
            yLabel={`${pLabel} latency (ms)`}
            xName="Batch"
            valueFormat={formatMs}
          />
        ) : (
          <Notice title="Latency vs batch size">
            {notes.find((n) => n.startsWith("Only batch")) ??
              `Only batch size ${sweep.batchSizes[0]} was measured, so there is no curve to draw.`}
          </Notice>
        )}
        {sweep.concurrencies.length > 1 ? (
          <LineChart
            title={`Throughput vs concurrency (batch ${batch})`}
            description="Inferences per second for each number of concurrent callers, one line per variant."
            series={byConcurrency}
            xLabel="Concurrent callers"
            yLabel="Throughput (inferences/s)"
            xName="Concurrency"
            valueFormat={formatRate}
          />
        ) : (
          <Notice title="Throughput vs concurrency">Only concurrency {sweep.concurrencies[0]} was measured.</Notice>
        )}
        <div>
          <div className="toolbar">
            <Select label="Distribution of" value={variant} options={names} onChange={setVariant} />
          </div>
          {samples.length ? (
            <>
              <HistogramChart
                data={hist}
                title={`Latency distribution: ${variant} (batch ${batch}, concurrency ${concurrency}, ${formatSamples(requests)} requests${samples.length < requests ? `, ${formatSamples(samples.length)} of them drawn` : ""})`}
                description={`How many of the ${formatSamples(samples.length)} drawn requests took each latency; the marks are the run's p50 and p99 as the table gives them.`}
                marks={[
                  { label: "p50", value: selected?.p50_ms ?? null },
                  { label: "p99", value: selected?.p99_ms ?? null },
                ]}
              />
              {p99Note ? <p className="muted small">p99 is not marked: {p99Note}.</p> : null}
            </>
          ) : (
            <Empty title={`No raw samples for ${variant} at batch ${batch}, concurrency ${concurrency}.`} />
          )}
        </div>
      </div>
      {failures.length ? (
        <ul className="notes-list">
          {failures.map((f) => (
            <li key={f.name}>
              <strong className="text-bad">{f.name} was not measured:</strong> {f.reason}
            </li>
          ))}
        </ul>
      ) : null}
      {notes.length ? (
        <details className="notes">
          <summary>Notes from the benchmark</summary>
          <ul>
            {notes.map((n) => (
              <li key={n}>{n}</li>
            ))}
          </ul>
        </details>
      ) : null}
    </div>
  );
}

/** Where a benchmark ran, in words: the device or worker, its architecture and CPU. */
export function machine(report: BenchmarkReport): string {
  const on = report.measured_on;
  if (!on) {
    const cpu = report.baseline?.cpu_model ? ` (${report.baseline.cpu_model})` : "";
    return `${report.worker_host ?? "the profile's worker"}${cpu}`;
  }
  const what = on.kind === "device" ? `device ${on.name}` : on.name;
  const facts = [on.arch, on.cpu_model, on.cores ? `${on.cores} cores` : ""].filter(Boolean).join(", ");
  return facts ? `${what} (${facts})` : what;
}
