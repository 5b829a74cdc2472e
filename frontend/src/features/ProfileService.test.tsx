import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { HardwareProfile } from "../api/types";
import { ProfileService } from "./ProfileService";

const note =
  "No worker serves arm-cpu-mnn, which needs an aarch64 CPU: its steps wait until one connects. " +
  "Start a worker on such a machine with `python manage.py run_worker --queues arm64`.";
const profiles = [
  {
    slug: "x86-cpu",
    name: "x86-64 CPU",
    needs: "an x86_64 CPU",
    served_by: ["cpu@box-1"],
    service_note: "",
    queued: 0,
    running: 2,
  },
  {
    slug: "arm-cpu-mnn",
    name: "ARM CPU",
    needs: "an aarch64 CPU",
    served_by: [],
    service_note: note,
    queued: 3,
    running: 0,
  },
  { slug: "old", name: "Retired", needs: "any machine", served_by: [], service_note: "x", enabled: false },
] as unknown as HardwareProfile[];

describe("ProfileService", () => {
  it("names the workers that serve a profile and says how to serve one nothing serves", () => {
    render(<ProfileService profiles={profiles} />);
    const rows = screen.getAllByRole("row").slice(1);
    expect(rows).toHaveLength(2); // the disabled profile is not listed
    expect(rows[0]!.textContent).toContain("cpu@box-1");
    expect(rows[0]!.textContent).toContain("2 running · 0 waiting");
    expect(rows[1]!.textContent).toContain("an aarch64 CPU");
    expect(rows[1]!.textContent).toContain("0 running · 3 waiting");
    expect(screen.getByRole("status").textContent).toBe(note);
  });
});
