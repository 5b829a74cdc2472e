import { render } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { formatMs, formatTick } from "../lib/format";
import { axisTitleLines, LineChart, PercentileChart, labelledTicks, wrapLabel } from "./Charts";
import { ScatterChart } from "./ScatterChart";
import { logScale } from "./scales";

// A box `width` CSS pixels wide, as a browser would measure the chart's figure.
function boxesAre(width: number) {
  vi.spyOn(HTMLElement.prototype, "getBoundingClientRect").mockReturnValue({ width } as DOMRect);
  vi.stubGlobal(
    "ResizeObserver",
    class {
      observe() {}
      disconnect() {}
    },
  );
}
afterEach(() => vi.unstubAllGlobals());

const series = [
  {
    name: "original",
    baseline: true,
    points: [
      { x: 1, y: 2 },
      { x: 8, y: 9 },
    ],
  },
  {
    name: "ort-int8-dynamic",
    baseline: false,
    points: [
      { x: 1, y: 1 },
      { x: 8, y: 4 },
    ],
  },
];

function lineChart() {
  return render(
    <LineChart
      title="p99 latency vs batch size"
      description="p99 latency per batch size"
      series={series}
      xLabel="Batch size"
      yLabel="p99 latency (ms)"
      xName="Batch"
      valueFormat={formatMs}
    />,
  );
}

const viewBox = (container: HTMLElement) => container.querySelector("svg.chart-svg")?.getAttribute("viewBox");

describe("charts on narrow screens", () => {
  it("draw at their box's width, so 13 px text shows at 13 px on a phone", () => {
    boxesAre(330);
    expect(viewBox(lineChart().container)).toBe("0 0 330 320");
  });

  it("keep their drawing width on wide screens (scaled up as before)", () => {
    boxesAre(1000);
    expect(viewBox(lineChart().container)).toBe("0 0 600 320");
  });

  it("are scaled down only below 260 px, where the plot would be too cramped", () => {
    boxesAre(200);
    expect(viewBox(lineChart().container)).toBe("0 0 260 320");
  });

  it("draw at their full width where nothing measures them", () => {
    expect(viewBox(lineChart().container)).toBe("0 0 600 320");
  });

  it("put the percentile chart's variant names above their rows, whole", () => {
    boxesAre(330);
    const { container } = render(
      <PercentileChart
        title="Latency percentiles"
        description="p50 to p99.9"
        rows={[
          {
            name: "onnxruntime-int8-dynamic-per-channel",
            baseline: false,
            values: { p50_ms: 1, p90_ms: 2, p95_ms: 3, p99_ms: 4, p99_9_ms: 5 },
            intervals: {},
            notes: {},
          },
        ]}
      />,
    );
    const names = [...container.querySelectorAll("text")].map((t) => t.textContent);
    expect(names).toContain("onnxruntime-int8-dynamic-per-channel");
  });

  it("cut a scatter point's label to the room beside it", () => {
    boxesAre(300);
    const { container } = render(
      <ScatterChart
        title="Speed vs accuracy"
        description="variants"
        points={[
          { key: "a", x: 1, y: 1, group: "g", label: "a-variant-with-a-very-long-name", title: "a" },
          { key: "b", x: 2, y: 0, group: "g", label: "b", title: "b" },
        ]}
        groups={[{ name: "g", color: "#0072B2", marker: "circle" }]}
        front={["a", "b"]}
        xLabel="Speed-up over the original (CPU time), ×"
        yLabel="Worst output SNR, dB"
      />,
    );
    expect(viewBox(container)).toBe("0 0 300 320");
    const label = [...container.querySelectorAll(".scatter-point text")].map((t) => t.textContent ?? "");
    expect(label[0]).toMatch(/…$/);
    // the x axis title is broken into lines that fit
    const title = container.querySelector(".axis-title");
    expect(title?.querySelectorAll("tspan").length).toBe(2);
  });
});

describe("axis labels", () => {
  it("break a long title at spaces into lines that fit", () => {
    expect(wrapLabel("Speed-up over the original (CPU time), ×", 20)).toEqual([
      "Speed-up over the",
      "original (CPU time),",
      "×",
    ]);
    expect(axisTitleLines("Latency (ms, log scale)", 600)).toEqual(["Latency (ms, log scale)"]);
  });

  it("leave out tick labels that would touch, keeping the powers of ten", () => {
    const narrow = logScale([1, 900], [16, 300]);
    const shown = labelledTicks(narrow, formatTick);
    expect([...shown].filter((t) => Number.isInteger(Math.log10(t))).sort((a, b) => a - b)).toEqual([1, 10, 100, 1000]);
    const boxes = [...shown]
      .map((t) => [narrow(t), (formatTick(t).length * 13 * 0.6) / 2])
      .sort((a, b) => (a[0] as number) - (b[0] as number));
    for (let i = 1; i < boxes.length; i++) {
      const [at, half] = boxes[i] as [number, number];
      const [before, halfBefore] = boxes[i - 1] as [number, number];
      expect(at - half).toBeGreaterThanOrEqual(before + halfBefore);
    }
    const wide = logScale([1, 900], [150, 578]);
    expect(labelledTicks(wide, formatTick).size).toBeGreaterThan(shown.size);
  });
});
