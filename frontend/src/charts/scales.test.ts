import { describe, expect, it } from "vitest";
import { linearScale, linearTicks, logScale, logTicks, pointScale } from "./scales";

describe("axis scales", () => {
  it("linear ticks are round and cover the data", () => {
    expect(linearTicks(0, 13_730)).toEqual([0, 5000, 10000, 15000]);
    expect(linearTicks(0.2, 0.9, 4)).toEqual([0.2, 0.4, 0.6, 0.8, 1]);
  });

  it("log ticks step 1-2-5 inside a few decades and only powers of ten across many", () => {
    expect(logTicks(0.02, 2)).toEqual([0.02, 0.05, 0.1, 0.2, 0.5, 1, 2]);
    expect(logTicks(0.001, 100)).toEqual([0.001, 0.01, 0.1, 1, 10, 100]);
  });

  it("a log scale maps decades to equal distances", () => {
    const x = logScale([0.1, 10], [0, 200]);
    expect(x(0.1)).toBeCloseTo(0);
    expect(x(1)).toBeCloseTo(100);
    expect(x(10)).toBeCloseTo(200);
  });

  it("a linear scale from zero maps its outer ticks to the range ends", () => {
    const y = linearScale([120, 480], [300, 0], { zero: true });
    expect(y.domain).toEqual([0, 500]);
    expect(y(0)).toBe(300);
    expect(y(500)).toBe(0);
  });

  it("a point scale spaces batch sizes evenly, however far apart", () => {
    const x = pointScale([1, 8, 32, 128], [0, 300]);
    expect([1, 8, 32, 128].map(x)).toEqual([0, 100, 200, 300]);
  });
});
