// The playground: preprocessing prefilled from the input plan, a trial requested with the file,
// the chosen variants and the edited preprocessing, polled until done, and the results side by
// side: top classes, boxes drawn over the image with class and score, the difference per variant.
import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import axe from "axe-core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Playground, TrialResults, type TrialResult } from "./Playground";

// what GET /versions/{id}/trials/defaults/ proposes for a [batch, 3, 224, 192] image in [0, 1]
// (tests/apps/test_trials.py checks the server's proposal itself)
const proposal = {
  preprocessing: {
    size: [224, 192],
    layout: "NCHW",
    channel_order: "RGB",
    scale: 1 / 255,
    mean: [0, 0, 0],
    std: [1, 1, 1],
    dtype: "float32",
    resample: "bilinear",
  },
  note: "",
};
const DEFAULTS = "/api/v1/versions/3/trials/defaults/";

const classifierResult: TrialResult = {
  input: {
    kind: "image",
    applied: ["resized 64x48 -> 192x224 bilinear, BGR, /255, mean [0, 0, 0], std [1, 1, 1], NCHW float32"],
    image_size: [64, 48],
  },
  original: {
    backend: "onnxruntime",
    outputs: [
      {
        name: "logits",
        shape: [1, 10],
        dtype: "float32",
        kind: "classifier",
        top: [
          { class: 7, probability: 0.8, score: 5 },
          { class: 1, probability: 0.1, score: 2 },
        ],
        scores: "the output reads as logits: softmax applied",
        stats: { min: 0, max: 5, mean: 0.7, nonfinite: 0, first: [0, 2, 0] },
      },
    ],
  },
  variants: {
    "x86-cpu/ort-int8": {
      backend: "onnxruntime",
      outputs: [
        {
          name: "logits",
          shape: [1, 10],
          dtype: "float32",
          kind: "classifier",
          top: [{ class: 7, probability: 0.79, score: 4.9 }],
          scores: "the output reads as logits: softmax applied",
          stats: { min: 0, max: 4.9, mean: 0.7, nonfinite: 0, first: [0, 2, 0] },
        },
      ],
      difference: {
        within_default_tolerance: false,
        reasons: ["logits: max abs error 0.1 above 0.05."],
        outputs: [{ name: "logits", max_abs_error: 0.1, cosine: 0.9999, top1_agreement: 1 }],
      },
    },
  },
};

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status });
}

beforeEach(() => {
  vi.stubGlobal("URL", Object.assign(URL, { createObjectURL: () => "blob:preview", revokeObjectURL: () => undefined }));
});
afterEach(() => vi.unstubAllGlobals());

describe("Playground", () => {
  it("runs a trial with the edited preprocessing and the chosen variant, and shows the results", async () => {
    const user = userEvent.setup();
    const queued = { id: 5, version: 3, status: "queued", result: null, error: "" };
    const fetchMock = vi.fn(async (url: string, init?: RequestInit) => {
      if (url.startsWith(DEFAULTS)) return json(proposal);
      if (init?.method === "POST") return json(queued, 202);
      return json({ ...queued, status: "succeeded", result: classifierResult });
    });
    vi.stubGlobal("fetch", fetchMock);
    const { container } = render(
      <Playground versionId={3} inspected variants={["x86-cpu/ort-int8", "x86-cpu/ort-opt"]} canRun />,
    );

    const image = new File([new Uint8Array([137, 80, 78, 71])], "cat.png", { type: "image/png" });
    await user.upload(screen.getByLabelText(/Input file/), image);
    expect(screen.getByRole("img", { name: "Preview of the chosen image" })).toBeTruthy();
    expect(((await screen.findByLabelText("Height")) as HTMLInputElement).value).toBe("224");
    expect((screen.getByLabelText("Width") as HTMLInputElement).value).toBe("192");
    await user.selectOptions(screen.getByLabelText("Channel order"), "BGR");
    await user.click(screen.getByRole("checkbox", { name: "x86-cpu/ort-int8" }));
    await user.click(screen.getByRole("button", { name: "Run" }));

    expect(await screen.findByText("Queued: waiting for a worker")).toBeTruthy();
    const posted = (fetchMock.mock.calls as [string, RequestInit | undefined][]).filter(
      ([u]) => !u.startsWith(DEFAULTS),
    );
    const [url, init] = posted[0] as [string, RequestInit];
    expect(url).toBe("/api/v1/versions/3/trials/");
    const form = init.body as FormData;
    expect(form.get("variants")).toBe("x86-cpu/ort-int8");
    expect(JSON.parse(String(form.get("preprocessing")))).toMatchObject({ channel_order: "BGR", size: [224, 192] });

    const results = await screen.findByRole("region", { name: "Trial results" }, { timeout: 3000 });
    const original = within(results).getByRole("article", { name: /^original/ });
    expect(
      within(original).getByRole("table", { name: /Top 2 classes by original; the output reads as logits/ }),
    ).toBeTruthy();
    const variant = within(results).getByRole("article", { name: /^x86-cpu\/ort-int8/ });
    expect(within(variant).getByText("Differs from the original")).toBeTruthy();
    expect(within(variant).getByText("logits: max abs error 0.1 above 0.05.")).toBeTruthy();
    const polled = (fetchMock.mock.calls as [string][]).map(([u]) => u).filter((u) => !u.startsWith(DEFAULTS));
    expect(polled[1]).toBe("/api/v1/trials/5/");

    const axeResults = await axe.run(container, { rules: { "color-contrast": { enabled: false } } });
    expect(axeResults.violations.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
  });

  it("shows the API's sentence when the trial can't start, and a failed trial's error", async () => {
    const user = userEvent.setup();
    const body = { code: "invalid", message: "variants: x is not a variant of this version.", fields: {} };
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => json(body, 400)),
    );
    render(<Playground versionId={3} inspected variants={[]} canRun />);
    await user.upload(screen.getByLabelText(/Input file/), new File(["{}"], "x.json", { type: "application/json" }));
    expect(screen.queryByLabelText("Height")).toBeNull();
    await user.click(screen.getByRole("button", { name: "Run" }));
    expect(await screen.findByText("variants: x is not a variant of this version.")).toBeTruthy();
  });

  it("lets viewers see but not run", () => {
    render(<Playground versionId={3} inspected variants={["a"]} canRun={false} />);
    expect((screen.getByRole("button", { name: "Run" }) as HTMLButtonElement).disabled).toBe(true);
    expect(screen.getByText("Trying needs a data scientist, approver or admin")).toBeTruthy();
  });
});

describe("TrialResults", () => {
  it("draws a detector's boxes over the image with class and score in words", async () => {
    const result: TrialResult = {
      input: { kind: "image", applied: ["resized 64x96 -> 32x32 bilinear"], image_size: [64, 96] },
      original: {
        backend: "onnxruntime",
        outputs: [
          {
            name: "output0",
            shape: [1, 3, 6],
            dtype: "float32",
            kind: "detection",
            boxes: [
              { class: 0, score: 0.9, box: [4, 6, 20, 30] },
              { class: 1, score: 0.8, box: [40, 60, 60, 90] },
            ],
            detections: 2,
            box_frame: "the original image's pixels (64x96)",
            stats: { min: 0, max: 30, mean: 5, nonfinite: 0, first: [2, 2, 10] },
          },
        ],
      },
      variants: {},
    };
    const { container } = render(<TrialResults result={result} imageSrc="blob:image" />);
    const drawing = screen.getByRole("img", { name: "2 boxes found by original on output output0" });
    expect(drawing.getAttribute("viewBox")).toBe("0 0 64 96");
    expect(within(drawing).getByText("class 0 90%")).toBeTruthy();
    expect(within(drawing).getByText("class 1 80%")).toBeTruthy();
    expect(screen.getByRole("table", { name: /Boxes by original/ })).toBeTruthy();
    await waitFor(async () => {
      const axeResults = await axe.run(container, { rules: { "color-contrast": { enabled: false } } });
      expect(axeResults.violations.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
    });
  });
});
