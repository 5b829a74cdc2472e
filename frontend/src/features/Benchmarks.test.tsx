import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { BenchmarkPoint, BenchmarkReport } from "../api/reports";
import { formatInterval } from "../charts/Charts";
import { formatMs, formatRate } from "../lib/format";
import evidence from "../test/fixtures/evidence-reports.json";
import version from "../test/fixtures/mlp-version.json";
import { Benchmarks } from "./Benchmarks";

// Real engine output (workers/engine/benchmark.py), the way the benchmark step stores it: the
// stateful test model of tests/engine/test_inputs.py on generated inputs, the original measured
// in 3 trials (1,050 requests: p99 supported) and "ort-opt-all" in 1 short trial (180 requests:
// p99 is None with its note); raw samples thinned to 400.
const report = evidence.benchmark as unknown as BenchmarkReport;
const original = report.baseline?.points?.[0] as BenchmarkPoint;
const short = report.variants["ort-opt-all"]?.points?.[0] as BenchmarkPoint;
// The same model's report from before intervals existed.
const legacy = (version.reports.benchmark as unknown as Record<string, BenchmarkReport>)["x86-cpu"] as BenchmarkReport;

function figuresRow(name: string): HTMLElement {
  const table = screen.getByRole("table", { name: /each figure with its 95% interval/ });
  return within(table)
    .getByRole("rowheader", { name: new RegExp(`^${name}`) })
    .closest("tr") as HTMLElement;
}

function cells(row: HTMLElement): string[] {
  return within(row)
    .getAllByRole("cell")
    .map((cell) => cell.textContent ?? "");
}

describe("Benchmarks", () => {
  it("says which machine measured, and that emulated timings are not the device's", () => {
    const emulated: BenchmarkReport = {
      ...report,
      measured_on: {
        kind: "device",
        name: "pi-5",
        arch: "aarch64",
        cpu_model: "emulated aarch64 CPU (QEMU)",
        cores: 2,
        emulation: "QEMU user-mode emulation of aarch64 on an x86-64 host (AMD EPYC)",
      },
    };
    render(<Benchmarks report={emulated} />);
    expect(
      screen.getByText(/Measured on device pi-5 \(aarch64, emulated aarch64 CPU \(QEMU\), 2 cores\)/),
    ).toBeTruthy();
    const warning = screen.getByRole("status");
    expect(warning.textContent).toContain("Emulated: not representative of the device");
    expect(warning.textContent).toContain("ranks by accuracy and size only");
  });

  it("names the worker of a report from before machines were recorded", () => {
    render(<Benchmarks report={{ ...report, measured_on: null }} />);
    expect(screen.queryByText(/Emulated/)).toBeNull();
    expect(screen.getByText(/Measured on/).textContent).toContain(report.worker_host ?? "the profile's worker");
  });

  it("shows every latency figure with its 95% interval, the sample count and the trials", () => {
    render(<Benchmarks report={report} />);
    const [p50, p99, p999, cpu, throughput, samples, trials] = cells(figuresRow("original"));
    expect(p50).toBe(`${formatMs(original.p50_ms)} ${formatInterval(original.p50_ci_ms, formatMs)}`);
    expect(p99).toBe(`${formatMs(original.p99_ms)} ${formatInterval(original.p99_ci_ms, formatMs)}`);
    expect(p99).toMatch(/^0\.088 ms \[0\.062 ms – 0\.226 ms\]$/);
    // 1,050 requests support p99 but not p99.9
    expect(p999).toBe("not enough samples (1050); it needs at least 10,000");
    expect(cpu).toBe(`${formatMs(original.cpu_ms)} ${formatInterval(original.cpu_ci_ms, formatMs)}`);
    expect(throughput).toBe(`${formatRate(original.throughput)} ${formatInterval(original.throughput_ci, formatRate)}`);
    expect(samples).toBe("1,050");
    expect(trials).toBe("3");
    const methods = screen.getByText(/How the intervals were obtained/).closest("div") as HTMLElement;
    expect(methods.textContent).toContain(`original: ${original.interval_method}`);
    expect(original.interval_method).toContain("1,050 requests pooled from 3 trials");
  });

  it('says "not enough samples" where the report has no p99, instead of a number', () => {
    render(<Benchmarks report={report} />);
    expect(short.p99_ms).toBeNull();
    const [, p99, , , , samples, trials] = cells(figuresRow("ort-opt-all"));
    expect(p99).toBe("not enough samples (180); it needs at least 1,000");
    expect(samples).toBe("180");
    expect(trials).toBe("1");
    // the two runs were measured differently, so each method is listed with its runs
    const methods = screen.getByText(/How the intervals were obtained/).closest("div") as HTMLElement;
    expect(within(methods).getAllByRole("listitem")).toHaveLength(2);
    expect(methods.textContent).toContain("from 1 trial");
    // the percentile chart's table agrees
    expect(screen.getAllByTitle(short.p99_note as string).length).toBeGreaterThanOrEqual(2);
  });

  it("words how the intervals were obtained once when every run was measured alike", () => {
    const alike = structuredClone(report);
    const variant = alike.variants["ort-opt-all"]?.points?.[0] as BenchmarkPoint;
    Object.assign(variant, {
      trials: 3,
      samples: 1020,
      interval_method: original.interval_method?.replace("1,050", "1,020"),
    });
    render(<Benchmarks report={alike} />);
    expect(
      screen.getByText(
        `How the intervals were obtained: ${original.interval_method} (worded for original; each run's own count is in the Samples column).`,
      ),
    ).toBeTruthy();
  });

  it("marks the histogram with the run's own p99, the one the tables show", async () => {
    const user = userEvent.setup();
    const { container } = render(<Benchmarks report={report} />);
    await user.selectOptions(screen.getByLabelText("Distribution of"), "original");
    const marks = [...container.querySelectorAll(".mark-label")].map((m) => m.textContent);
    expect(marks).toEqual([`p50 ${formatMs(original.p50_ms)}`, `p99 ${formatMs(original.p99_ms)}`]);
    expect(cells(figuresRow("original"))[1]).toMatch(new RegExp(`^${formatMs(original.p99_ms)} `));
    // The drawn samples are a thinned 400 of 1,050: their own 99th percentile is another number,
    // the one the histogram used to mark.
    const drawn = [...(original.samples_ms ?? [])].sort((a, b) => a - b);
    const drawnP99 = drawn[Math.ceil(0.99 * drawn.length) - 1] as number;
    expect(formatMs(drawnP99)).not.toBe(formatMs(original.p99_ms));
    expect(screen.getByText(/1,050 requests, 400 of them drawn/)).toBeTruthy();
  });

  it("leaves p99 unmarked, and says why, where the samples can't support it", () => {
    const { container } = render(<Benchmarks report={report} recommended="ort-opt-all" />);
    const marks = [...container.querySelectorAll(".mark-label")].map((m) => m.textContent);
    expect(marks).toEqual([`p50 ${formatMs(short.p50_ms)}`]);
    expect(screen.getByText(`p99 is not marked: ${short.p99_note}.`)).toBeTruthy();
  });

  it("says what inputs the timings rest on and what was assumed, with what to declare", () => {
    render(<Benchmarks report={report} />);
    const timedOn = screen.getByText(/Timed on generated inputs/).closest("p") as HTMLElement;
    expect(timedOn.textContent).toBe(
      "Timed on generated inputs: input: audio-like signal 1x512 in [-1, 1]; sr: scalar one of 8000, 16000 from " +
        "the model's comparisons (Equal); state: zeros 2x1x128 (a recurrent state starts at zero).",
    );
    const assumptions = within(screen.getByRole("list", { name: "What the timings' inputs assumed" })).getAllByRole(
      "listitem",
    );
    expect(assumptions.map((a) => a.textContent)).toEqual(report.inputs?.assumptions);
    const declaration = within(assumptions[1] as HTMLElement).getByText('{"inputs": {"sr": {"values": [...]}}}');
    expect(declaration.tagName).toBe("CODE");
  });

  it("still renders a report from before intervals, saying it has none", () => {
    render(<Benchmarks report={legacy} />);
    const point = legacy.baseline?.points?.find((p) => p.batch_size === 1 && p.concurrency === 1) as BenchmarkPoint;
    const [p50, p99, , cpu, , samples, trials] = cells(figuresRow("original"));
    expect(p50).toBe(`${formatMs(point.p50_ms)} no interval`);
    expect(p99).toBe(`${formatMs(point.p99_ms)} no interval`);
    // CPU time per request of a batch of 1 is the CPU time per inference
    expect(cpu).toBe(`${formatMs(point.cpu_ms_per_request)} no interval`);
    expect(samples).toBe(String(point.requests));
    expect(trials).toBe("1");
    expect(screen.getByText(/This report has no confidence intervals/)).toBeTruthy();
    expect(screen.getByText(/does not say which inputs the timings were measured on/)).toBeTruthy();
    // the variants that could not be measured still say why
    expect(screen.getByText("ov-ir-fp16 was not measured:")).toBeTruthy();
  });
});
