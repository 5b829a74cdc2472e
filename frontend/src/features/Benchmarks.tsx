// The benchmark plots: latency percentiles per variant, latency against batch size,
// throughput against concurrency, and one variant's latency distribution from its raw
// samples. Controls choose the batch size / concurrency each plot is cut at.
import { useEffect, useId, useMemo, useState } from "react";
import type { BenchmarkReport } from "../api/reports";
import { HistogramChart, LineChart, PercentileChart } from "../charts/Charts";
import {
  BASELINE,
  failedRuns,
  histogram,
  latencyByBatch,
  measuredRuns,
  measuredSweep,
  PERCENTILES,
  percentileRows,
  quantile,
  samplesAt,
  throughputByConcurrency,
  type PercentileKey,
} from "../charts/series";
import { Empty, Notice } from "../components/ui";
import { formatMs, formatRate } from "../lib/format";

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
  const byBatch = latencyByBatch(report, concurrency, percentile);
  const byConcurrency = throughputByConcurrency(report, batch);
  const samples = samplesAt(report, variant, batch, concurrency);
  const hist = histogram(samples, 36);
  const pLabel = PERCENTILES.find((p) => p.key === percentile)?.label ?? "p99";
  const notes = [
    ...new Set([...(report.baseline?.notes ?? []), ...Object.values(report.variants).flatMap((v) => v.notes ?? [])]),
  ].filter((n) => !n.startsWith("No GPU memory"));
  const failures = failedRuns(report);

  return (
    <div className="benchmarks">
      <p className="muted small">
        Measured on {report.worker_host ?? "the profile's worker"}
        {report.baseline?.cpu_model ? ` (${report.baseline.cpu_model})` : ""}. "original" is the uploaded model in plain{" "}
        {report.baseline?.backend ?? "onnxruntime"}.
      </p>
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
            <HistogramChart
              data={hist}
              title={`Latency distribution: ${variant} (batch ${batch}, concurrency ${concurrency}, ${samples.length} requests)`}
              description={`How many of the ${samples.length} measured requests took each latency.`}
              marks={[
                { label: "p50", value: quantile(samples, 0.5) },
                { label: "p99", value: quantile(samples, 0.99) },
              ]}
            />
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
