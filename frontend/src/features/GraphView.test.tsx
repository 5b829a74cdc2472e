// The graph view: the nodes drawn, a search that finds and selects a node, a backend picker that
// colours the nodes (with a symbol and a word too), the details of a node, and a graph too big to draw.
import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import axe from "axe-core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { layers, layout } from "./graphLayout";
import { defaultPick, GraphCanvas, GraphView, type VersionGraph } from "./GraphView";

// x -> Conv (weights w) -> Relu -> Mish -> Add(+ Relu's output) -> y; onnxruntime refuses Mish,
// TensorRT runs Conv on the CPU and the rest on the GPU; OpenVINO is a reference column.
const data: VersionGraph = {
  version: 2,
  run_id: 7,
  node_count: 4,
  omitted: "",
  graph: {
    nodes: [
      {
        id: "stem/conv",
        op: "Conv",
        in: ["x", "w"],
        out: ["c"],
        attrs: { kernel_shape: "[3, 3]", pads: "[1, 1, 1, 1]" },
      },
      { id: "stem/relu", op: "Relu", in: ["c"], out: ["r"] },
      { id: "Mish_2", name: "", op: "Mish", in: ["r"], out: ["m"] },
      { id: "head/add", op: "Add", in: ["m", "r"], out: ["y"] },
    ],
    values: {
      x: { t: "float32", s: ["batch", 3, 8, 8] },
      w: { t: "float32", s: [4, 3, 3, 3], w: 1 },
      c: { t: "float32", s: ["batch", 4, 8, 8] },
      y: { t: "float32", s: ["batch", 4, 8, 8] },
    },
    inputs: ["x"],
    outputs: ["y"],
  },
  support: [
    {
      profile: "x86-cpu",
      backend: "openvino",
      verdict: "full",
      method: "runtime",
      report_only: true,
      counts: { supported: 4, unknown: 0, fallback: 0, unsupported: 0 },
      groups: [
        {
          status: "supported",
          nodes: ["stem/conv", "stem/relu", "Mish_2", "head/add"],
          reason: "",
          device: "CPU",
          after_rewrite: "",
        },
      ],
    },
    {
      profile: "x86-cpu",
      backend: "onnxruntime",
      verdict: "partial",
      method: "runtime",
      report_only: false,
      counts: { supported: 3, unknown: 0, fallback: 0, unsupported: 1 },
      groups: [
        {
          status: "supported",
          nodes: ["stem/conv", "stem/relu", "head/add"],
          reason: "",
          device: "",
          after_rewrite: "",
        },
        {
          status: "unsupported",
          nodes: ["Mish_2"],
          reason: "no Mish kernel in opset 17",
          device: "",
          after_rewrite: "",
        },
      ],
    },
    {
      profile: "nvidia-gpu",
      backend: "tensorrt",
      verdict: "partial",
      method: "runtime",
      report_only: false,
      counts: { supported: 3, unknown: 0, fallback: 1, unsupported: 0 },
      groups: [
        { status: "fallback", nodes: ["stem/conv"], reason: "runs on the CPU", device: "CPU", after_rewrite: "" },
        {
          status: "supported",
          nodes: ["stem/relu", "Mish_2", "head/add"],
          reason: "",
          device: "GPU",
          after_rewrite: "",
        },
      ],
    },
  ],
  notes: [],
};

const nodeButton = (name: RegExp) => screen.getByRole("button", { name });
const panel = () => screen.getByRole("complementary");

afterEach(() => vi.unstubAllGlobals());

describe("GraphCanvas", () => {
  it("draws every node, the graph's input and output, and no edge for the weights", () => {
    const { container } = render(<GraphCanvas data={data} />);
    for (const name of [/^Conv stem\/conv/, /^Relu stem\/relu/, /^Mish Mish_2/, /^Add head\/add/]) {
      expect(nodeButton(name)).toBeTruthy();
    }
    expect(container.querySelectorAll(".graph-end")).toHaveLength(2);
    // x->conv, conv->relu, relu->mish, mish->add, relu->add, add->y: six, none from w.
    expect(container.querySelectorAll(".graph-edges path")).toHaveLength(6);
    expect(container.querySelector(".graph-edges")?.textContent).not.toContain("w:");
  });

  it("colours by the backend picked first: one that refuses a node, with its count and a legend", async () => {
    const user = userEvent.setup();
    render(<GraphCanvas data={data} />);
    expect((screen.getByLabelText("Colour by") as HTMLSelectElement).value).toBe("x86-cpu/onnxruntime");
    expect(screen.getByText("1 node unsupported on onnxruntime")).toBeTruthy();
    const mish = nodeButton(/^Mish Mish_2: unsupported on onnxruntime$/);
    expect(mish.getAttribute("class")).toContain("status-unsupported");
    expect(mish.textContent).toContain("✕"); // not colour alone
    expect(within(screen.getByRole("list", { name: "What the marks mean" })).getAllByRole("listitem")).toHaveLength(4);

    await user.selectOptions(screen.getByLabelText("Colour by"), "nvidia-gpu/tensorrt");
    expect(screen.getByText("0 nodes unsupported on tensorrt")).toBeTruthy();
    expect(nodeButton(/^Mish Mish_2/).getAttribute("class")).toContain("status-supported");
    const conv = nodeButton(/^Conv stem\/conv: falls back on tensorrt$/);
    expect(conv.getAttribute("class")).toContain("status-fallback");
    expect((screen.getByRole("button", { name: "Next unsupported node" }) as HTMLButtonElement).disabled).toBe(true);

    await user.selectOptions(screen.getByLabelText("Colour by"), "");
    expect(nodeButton(/^Conv stem\/conv$/).getAttribute("class")).toContain("status-none");
  });

  it("finds a node by operator or name, selects it and shows its details", async () => {
    const user = userEvent.setup();
    render(<GraphCanvas data={data} />);
    await user.type(screen.getByLabelText("Find a node by name or operator"), "mish{Enter}");
    expect(screen.getByText(/1 of 1 nodes match "mish": Mish_2/)).toBeTruthy();
    expect(nodeButton(/^Mish Mish_2/).getAttribute("aria-pressed")).toBe("true");
    expect(within(panel()).getByRole("heading", { level: 3 }).textContent).toBe("Mish Mish_2");
    expect(panel().textContent).toContain("Unsupported on onnxruntime: no Mish kernel in opset 17");
    expect(panel().textContent).toContain("(unnamed)");

    // Two matches: Enter again goes to the next.
    await user.clear(screen.getByLabelText("Find a node by name or operator"));
    await user.type(screen.getByLabelText("Find a node by name or operator"), "stem{Enter}");
    expect(screen.getByText(/1 of 2 nodes match "stem": stem\/conv/)).toBeTruthy();
    await user.type(screen.getByLabelText("Find a node by name or operator"), "{Enter}");
    expect(screen.getByText(/2 of 2 nodes match "stem": stem\/relu/)).toBeTruthy();

    await user.clear(screen.getByLabelText("Find a node by name or operator"));
    await user.type(screen.getByLabelText("Find a node by name or operator"), "softmax{Enter}");
    expect(screen.getByText(/No node is named "softmax"/)).toBeTruthy();
  });

  it("shows a clicked node's attributes and the shapes it reads and writes, weights marked", async () => {
    const user = userEvent.setup();
    render(<GraphCanvas data={data} />);
    await user.click(nodeButton(/^Conv stem\/conv/));
    const details = panel();
    expect(within(details).getByRole("heading", { level: 3 }).textContent).toBe("Conv stem/conv");
    expect(details.textContent).toContain("kernel_shape[3, 3]");
    expect(details.textContent).toContain("x float32[batch, 3, 8, 8]");
    expect(details.textContent).toContain("w float32[4, 3, 3, 3] (weight)");
    expect(details.textContent).toContain("c float32[batch, 4, 8, 8]");
    // From an output to the node that reads it.
    await user.click(within(details).getByRole("button", { name: "Go to stem/relu" }));
    expect(within(panel()).getByRole("heading", { level: 3 }).textContent).toBe("Relu stem/relu");
  });

  it("opens a focused node's details with Enter, and walks the unsupported nodes", async () => {
    const user = userEvent.setup();
    render(<GraphCanvas data={data} />);
    nodeButton(/^Add head\/add/).focus();
    await user.keyboard("{Enter}");
    expect(within(panel()).getByRole("heading", { level: 3 }).textContent).toBe("Add head/add");

    await user.click(screen.getByRole("button", { name: "Next unsupported node" }));
    expect(within(panel()).getByRole("heading", { level: 3 }).textContent).toBe("Mish Mish_2");
  });

  it("says a graph too big to draw is too big, with its size, and points to the op table", () => {
    render(<GraphCanvas data={{ ...data, graph: null, node_count: 5000, omitted: "The model has 5,000 nodes." }} />);
    expect(screen.getByText("Too big to draw here; 5,000 nodes")).toBeTruthy();
    expect(screen.getByRole("link", { name: "Go to the op-support table" }).getAttribute("href")).toBe("#matrix");
    expect(screen.queryByRole("button", { name: /^Conv/ })).toBeNull();
  });

  it("has nothing axe-core objects to", async () => {
    // jsdom draws no canvas; axe only uses one to measure glyphs, which it can do without.
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
    const { container } = render(<GraphCanvas data={data} />);
    const results = await axe.run(container, { rules: { "color-contrast": { enabled: false } } });
    expect(results.violations.map((violation) => `${violation.id}: ${violation.help}`)).toEqual([]);
  });

  it("picks a built backend with problems first, else the first built one", () => {
    expect(defaultPick(data.support)).toBe("x86-cpu/onnxruntime");
    expect(defaultPick(data.support.filter((entry) => entry.backend !== "onnxruntime"))).toBe("nvidia-gpu/tensorrt");
    expect(defaultPick([])).toBe("");
  });
});

describe("GraphView", () => {
  it("loads the graph from the API", async () => {
    const fetchMock = vi.fn(async (_url: string) => new Response(JSON.stringify(data), { status: 200 }));
    vi.stubGlobal("fetch", fetchMock);
    render(<GraphView versionId={2} />);
    expect(await screen.findByRole("button", { name: /^Mish Mish_2/ })).toBeTruthy();
    expect(fetchMock.mock.calls[0]?.[0]).toBe("/api/v1/versions/2/graph/");
  });

  it("says why there is no graph, in the API's words", async () => {
    const body = { code: "no_graph", message: "Re-run the pipeline to draw it.", fields: {} };
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => new Response(JSON.stringify(body), { status: 404 })),
    );
    render(<GraphView versionId={2} />);
    await waitFor(() => expect(screen.getByText("Re-run the pipeline to draw it.")).toBeTruthy());
    expect(screen.getByText("No graph to draw")).toBeTruthy();
  });
});

describe("layout", () => {
  it("puts each node one layer below the deepest node it reads from", () => {
    const edges: [string, string, string][] = [
      ["a", "b", ""],
      ["b", "c", ""],
      ["a", "c", ""],
    ];
    expect([...layers(["a", "b", "c"], edges)]).toEqual([
      ["a", 0],
      ["b", 1],
      ["c", 2],
    ]);
    const placed = layout({ keys: ["a", "b", "c"], edges });
    const [a, b, c] = ["a", "b", "c"].map((key) => placed.nodes.get(key)!);
    expect(a!.y).toBeLessThan(b!.y);
    expect(b!.y).toBeLessThan(c!.y);
    // The edge that skips a layer bends through a point on the skipped layer.
    expect(placed.edges[2]?.points).toHaveLength(3);
  });

  it("puts a node that reads nothing just above the node that reads it, not in the top row", () => {
    const edges: [string, string, string][] = [
      ["x", "a", ""],
      ["a", "b", ""],
      ["b", "c", ""],
      ["k", "c", ""], // a constant c reads
    ];
    const layer = layers(["x", "a", "b", "k", "c"], edges);
    expect(layer.get("c")).toBe(3);
    expect(layer.get("k")).toBe(2);
    expect(layer.get("x")).toBe(0);
  });

  it("orders a layer so edges do not cross where they need not", () => {
    // a feeds d, b feeds c: the lower layer should list d under a and c under b.
    const placed = layout({
      keys: ["a", "b", "c", "d"],
      edges: [
        ["a", "d", ""],
        ["b", "c", ""],
      ],
    });
    const x = (key: string) => placed.nodes.get(key)!.x;
    expect(x("a") < x("b")).toBe(x("d") < x("c"));
  });
});
