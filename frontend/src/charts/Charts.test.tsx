import { render } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { formatMs, formatTick } from "../lib/format";
import { axisTitleLines, LineChart, PercentileChart, labelledTicks } from "./Charts";
import { CHAR_EM, fitText, wrapToWidth } from "./measure";
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
    // jsdom measures nothing: CHAR_EM a character, so 20 characters' room at 14 px
    expect(wrapToWidth("Speed-up over the original (CPU time), ×", 20 * 14 * CHAR_EM, 14)).toEqual([
      "Speed-up over the",
      "original (CPU time),",
      "×",
    ]);
    expect(axisTitleLines("Latency (ms, log scale)", 600)).toEqual(["Latency (ms, log scale)"]);
  });

  it("cut a name that doesn't fit with an ellipsis, and leave one that fits whole", () => {
    expect(fitText("resnet18-int8", 13 * 13 * CHAR_EM, 13)).toBe("resnet18-int8");
    const cut = fitText("onnxruntime-int8-dynamic-per-channel", 10 * 13 * CHAR_EM, 13);
    expect(cut).toBe("onnxrunti…");
    expect(fitText("anything", 2, 13)).toBe("");
  });

  it("leave out tick labels that would touch, keeping the powers of ten", () => {
    const narrow = logScale([1, 900], [16, 300]);
    const shown = labelledTicks(narrow, formatTick);
    expect([...shown.keys()].filter((t) => Number.isInteger(Math.log10(t))).sort((a, b) => a - b)).toEqual([
      1, 10, 100, 1000,
    ]);
    const boxes = [...shown]
      .map(([t, at]) => [at, (formatTick(t).length * 13 * CHAR_EM) / 2])
      .sort((a, b) => (a[0] as number) - (b[0] as number));
    for (let i = 1; i < boxes.length; i++) {
      const [at, half] = boxes[i] as [number, number];
      const [before, halfBefore] = boxes[i - 1] as [number, number];
      expect(at - half).toBeGreaterThanOrEqual(before + halfBefore);
    }
    const wide = logScale([1, 900], [150, 578]);
    expect(labelledTicks(wide, formatTick).size).toBeGreaterThan(shown.size);
  });

  it("move a label that would run past the chart's side inward, leaving the others where they are", () => {
    // a phone's percentile chart: the plot starts 16 px from the left edge
    const scale = logScale([0.004, 0.9], [16, 300]);
    const free = labelledTicks(scale, formatTick);
    const kept = labelledTicks(scale, formatTick, 13, [0, 320]);
    expect([...kept.keys()]).toEqual([...free.keys()]);
    for (const [tick, at] of kept) {
      const half = (formatTick(tick).length * 13 * CHAR_EM) / 2;
      expect(at - half).toBeGreaterThanOrEqual(0);
      expect(at + half).toBeLessThanOrEqual(320);
    }
    const leftmost = Math.min(...kept.keys());
    expect(kept.get(leftmost)).toBeGreaterThan(scale(leftmost));
  });
});
