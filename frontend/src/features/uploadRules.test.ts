import { describe, expect, it } from "vitest";
import {
  checkInputDeclarations,
  checkOutputDeclarations,
  EMPTY_UPLOAD,
  parseIntList,
  slugify,
  unsignedFormat,
  unsignedFormatOf,
  uploadFormData,
  validateUpload,
  zipMemberNames,
  type UploadValues,
} from "./uploadRules";
import { TORCHSCRIPT_MEMBERS, zipFile } from "../test/zipFile";

const file = new File([new Uint8Array([8, 1, 2, 3])], "mlp.onnx");
const valid: UploadValues = { ...EMPTY_UPLOAD, model: "mlp", file };

describe("upload form rules", () => {
  it("needs a model name, a non-empty file and (in several teams) a team", () => {
    const errors = validateUpload(EMPTY_UPLOAD, { needsTeam: true });
    expect(Object.keys(errors).sort()).toEqual(["file", "model", "team"]);
    expect(errors.file).toBe("Choose the model file to upload, or drop it here.");
    expect(validateUpload(valid, { needsTeam: false })).toEqual({});
    expect(validateUpload({ ...valid, file: new File([], "empty.onnx") }, { needsTeam: false }).file).toBe(
      "empty.onnx is empty (0 bytes). Choose the real model file.",
    );
    expect(validateUpload({ ...valid, model: "my model!" }, { needsTeam: false }).model).toMatch(
      /letters, digits, hyphens/,
    );
  });

  it("asks for a p99 budget with the throughput objective", () => {
    const throughput = { ...valid, objective: "throughput_within_p99_budget" as const };
    expect(validateUpload(throughput, { needsTeam: false }).p99BudgetMs).toMatch(/needs a p99 latency budget/);
    expect(validateUpload({ ...throughput, p99BudgetMs: "-3" }, { needsTeam: false }).p99BudgetMs).toMatch(
      /positive number/,
    );
    expect(validateUpload({ ...throughput, p99BudgetMs: "20" }, { needsTeam: false })).toEqual({});
  });

  it("checks the sweep, tolerance and input signature", () => {
    const errors = validateUpload(
      { ...valid, batchSizes: "1, x", concurrency: "0", minCosine: "1.5", maxAbsError: "-1", inputs: "[{]" },
      { needsTeam: false },
    );
    expect(Object.keys(errors).sort()).toEqual(["batchSizes", "concurrency", "inputs", "maxAbsError", "minCosine"]);
    expect(validateUpload({ ...valid, inputs: '{"name": "x"}' }, { needsTeam: false }).inputs).toMatch(
      /JSON list of inputs/,
    );
    expect(parseIntList("1, 8 32")).toEqual([1, 8, 32]);
    expect(parseIntList("1.5")).toBeNull();
    expect(slugify("  My Model v2 ")).toBe("my-model-v2");
  });

  it("builds the multipart body the API takes", () => {
    const form = uploadFormData({
      ...valid,
      team: "vision",
      notes: " retrained ",
      profiles: ["x86-cpu", "nvidia-gpu"],
      objective: "throughput_within_p99_budget",
      p99BudgetMs: "12.5",
      batchSizes: "1,8",
      concurrency: "1 4",
      minCosine: "0.999",
      inputs: '[{"name": "x", "shape": ["batch", 8], "dtype": "float32"}]',
    });
    expect((form.get("file") as File).name).toBe("mlp.onnx");
    expect(Object.fromEntries([...form.entries()].filter(([k]) => k !== "file"))).toEqual({
      notes: "retrained",
      team: "vision",
      profiles: "x86-cpu,nvidia-gpu",
      objective: "throughput_within_p99_budget",
      p99_budget_ms: "12.5",
      benchmark: '{"batch_sizes":[1,8],"concurrency":[1,4]}',
      tolerance: '{"min_cosine":0.999}',
      inputs: '[{"name": "x", "shape": ["batch", 8], "dtype": "float32"}]',
    });
    const minimal = uploadFormData(valid);
    expect([...minimal.keys()]).toEqual(["file", "objective"]);
  });

  it("checks the input and output declarations' shape, and sends them as written", () => {
    expect(checkInputDeclarations('{"inputs": {"sr": {"value": 16000}}, "dims": {"height": {"typical": 640}}}')).toBe(
      undefined,
    );
    expect(checkInputDeclarations("{}")).toBeUndefined();
    expect(checkInputDeclarations('{"sr": {"value": 16000}}')).toMatch(
      /^The input declarations take "inputs" and "dims" only; "sr" is not one of them\. Put each input under "inputs"/,
    );
    expect(checkInputDeclarations("[1]")).toMatch(/must be a JSON object with "inputs" and\/or "dims"/);
    expect(checkInputDeclarations('{"inputs": {"x": {"kind": "picture"}}}')).toBe(
      "Input 'x' has kind \"picture\"; the kinds are image, token_ids, attention_mask, audio, state, values, features.",
    );
    expect(checkInputDeclarations('{"dims": {"height": 640}}')).toBe(
      "The declaration of dim 'height' must be an object.",
    );
    expect(checkInputDeclarations("{inputs: 1}")).toMatch(/^The input declarations are not valid JSON/);
    expect(checkOutputDeclarations('{"logits": {"kind": "classifier", "top_k": 3}}')).toBeUndefined();
    expect(checkOutputDeclarations('{"logits": "classifier"}')).toMatch(/must be an object with a "kind"/);
    expect(checkOutputDeclarations('{"out": {"kind": "detection", "boxes": [0, 4]}}')).toMatch(
      /declared a detection head without "scores"/,
    );
    const errors = validateUpload({ ...valid, inputDeclarations: "{", outputDeclarations: "[]" }, { needsTeam: false });
    expect(Object.keys(errors).sort()).toEqual(["inputDeclarations", "outputDeclarations"]);
    const form = uploadFormData({
      ...valid,
      inputDeclarations: ' {"inputs": {"sr": {"value": 16000}}} ',
      outputDeclarations: '{"logits": {"kind": "classifier"}}',
    });
    expect(form.get("input_declarations")).toBe('{"inputs": {"sr": {"value": 16000}}}');
    expect(form.get("output_declarations")).toBe('{"logits": {"kind": "classifier"}}');
  });

  it("tells a format that records no input signature from its zip's member names", async () => {
    expect(await zipMemberNames(zipFile(TORCHSCRIPT_MEMBERS, "mlp.pt"))).toEqual(TORCHSCRIPT_MEMBERS);
    expect(await zipMemberNames(file)).toBeNull();
    expect(unsignedFormat(TORCHSCRIPT_MEMBERS)).toBe("torchscript");
    // torch.export's .pt2 carries its example inputs; a torch.save checkpoint is refused anyway
    expect(unsignedFormat([...TORCHSCRIPT_MEMBERS, "mlp/archive_format"])).toBeNull();
    expect(unsignedFormat(["ckpt/data.pkl", "ckpt/data/0", "ckpt/version"])).toBeNull();
    expect(unsignedFormat(["net-symbol.json", "net-0000.params"])).toBe("mxnet");
    expect(unsignedFormat(["model.onnx", "weights.bin"])).toBeNull();
    expect(await unsignedFormatOf(zipFile(["resnet-symbol.json", "resnet-0010.params"], "resnet.zip"))).toBe("mxnet");
    expect(await unsignedFormatOf(zipFile(["model.onnx"], "m.zip"))).toBeNull();
  });

  it("asks for the input signature of a TorchScript file before it is sent", () => {
    const scripted = { ...valid, file: zipFile(TORCHSCRIPT_MEMBERS, "mlp.pt") };
    const errors = validateUpload(scripted, { needsTeam: false, format: "torchscript" });
    expect(errors.inputs).toMatch(/^mlp\.pt is a TorchScript file, which does not record its input shapes/);
    expect(errors.inputs).toContain('[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]');
    const inputs = '[{"name": "x", "shape": ["batch", 8], "dtype": "float32"}]';
    expect(validateUpload({ ...scripted, inputs }, { needsTeam: false, format: "torchscript" })).toEqual({});
    // MXNet symbols may record their shapes: the form asks, the server decides
    expect(validateUpload(scripted, { needsTeam: false, format: "mxnet" })).toEqual({});
  });
});
