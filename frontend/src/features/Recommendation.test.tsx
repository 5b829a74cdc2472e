// The recommendation with its intervals, and the "previous approved version" card read from the
// version's read-time `previous_approved` (fixtures: answers of the real API, see Compare.test.tsx).
import { render, screen, within } from "@testing-library/react";
import { MemoryRouter } from "react-router";
import { describe, expect, it } from "vitest";
import type { RecommendReport } from "../api/reports";
import type { VersionDetail } from "../api/types";
import same from "../test/fixtures/compare-same.json";
import slower from "../test/fixtures/previous-approved-slower.json";
import recommendation from "../test/fixtures/recommend-intervals.json";
import { PreviousApprovedCard, RecommendationCard } from "./Recommendation";

type Previous = VersionDetail["previous_approved"];

function card(previous: Previous, profile = "x86-cpu") {
  return render(
    <MemoryRouter>
      <PreviousApprovedCard previous={previous} profile={profile} />
    </MemoryRouter>,
  );
}

describe("the recommendation", () => {
  it("shows the ranking figure with its interval and the winner's speed-up with its band", () => {
    render(<RecommendationCard report={recommendation as unknown as RecommendReport} />);
    expect(
      screen.getByText(/Ranked by CPU time per inference: the runs were single-threaded/, { exact: false }),
    ).toBeTruthy();
    expect(screen.getByRole("columnheader", { name: "CPU time / inference" })).toBeTruthy();
    const speedup = screen.getByText("Speed-up over the original:").parentElement;
    expect(speedup?.textContent).toBe("Speed-up over the original: 3.02× (95%: 2.96–3.09×)");
    expect(speedup?.getAttribute("title")).toBe(
      "2.96x-3.09x faster by CPU time per inference (95% interval from 3 trials x 1,200 samples).",
    );
    const winner = screen.getByRole("row", { name: /Winner ort-int8/ });
    expect(winner.textContent).toContain("0.946 ms95%: 0.936–0.956 ms");
    expect(winner.textContent).toContain("3.02× (95%: 2.96–3.09×)");
    const runnerUp = screen.getByRole("row", { name: /Runner-up ort-int8-qdq/ });
    expect(runnerUp.textContent).toContain("Tied with 'ort-int8' within noise");
  });
});

describe("the previous approved version", () => {
  it("calls a slowdown only beyond the noise, with its band, and never as a percentage", () => {
    card(slower as unknown as Previous);
    expect(screen.getByText(/^Against approved v1:/)).toBeTruthy();
    const cpu = screen.getByRole("row", { name: /^CPU time per inference/ });
    expect(within(cpu).getByText("1.57–1.63× slower")).toBeTruthy();
    expect(cpu.textContent).toMatch(/95%: /);
    const warning = screen.getByText(/This version is slower than approved v1 beyond the measurement's noise/);
    expect(warning.textContent).toContain("1.57x-1.63x slower by CPU time per inference");
    expect(document.body.textContent).not.toMatch(/\d%\)|slower by \d/);
    const b = slower.profiles["x86-cpu"].b.version_id;
    expect(screen.getByRole("link", { name: "Open this comparison" }).getAttribute("href")).toBe(
      `/compare?a=${slower.version_id}&b=${b}&profile=x86-cpu`,
    );
  });

  it("reads no change where the two are within the noise", () => {
    card({ version_id: 1, number: 1, profiles: { "x86-cpu": same }, not_compared: {} } as unknown as Previous);
    const cpu = screen.getByRole("row", { name: /^CPU time per inference/ });
    expect(within(cpu).getByText("no change")).toBeTruthy();
    expect(screen.queryByText(/is slower than approved/)).toBeNull();
    expect(document.body.textContent).not.toMatch(/slower|faster/);
  });

  it("says why there is nothing to compare", () => {
    card(null);
    expect(screen.getByText("No earlier approved version of this model to compare with.")).toBeTruthy();
    card(
      {
        version_id: 1,
        number: 1,
        profiles: {},
        not_compared: { "nvidia-gpu": "scorer v1 (approved) was not run on nvidia-gpu." },
      } as unknown as Previous,
      "nvidia-gpu",
    );
    expect(screen.getByText("scorer v1 (approved) was not run on nvidia-gpu.")).toBeTruthy();
  });
});
