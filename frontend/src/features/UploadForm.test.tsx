import { act, fireEvent, render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/client";
import type { UploadHandle, UploadProgress } from "../api/upload";
import type { HardwareProfile, VersionDetail } from "../api/types";
import { TORCHSCRIPT_MEMBERS, zipFile } from "../test/zipFile";
import { UploadForm } from "./UploadForm";

const profiles = [
  {
    slug: "x86-cpu",
    name: "x86-64 CPU",
    description: "",
    device_kind: "cpu",
    backends: ["onnxruntime"],
    precisions: ["fp32"],
    queue: "cpu",
    enabled: true,
  },
  {
    slug: "nvidia-gpu",
    name: "NVIDIA GPU",
    description: "",
    device_kind: "gpu",
    backends: ["tensorrt"],
    precisions: ["fp16"],
    queue: "gpu",
    enabled: true,
  },
  {
    slug: "arm-cpu-mnn",
    name: "ARM CPU (mobile/embedded)",
    description: "",
    device_kind: "cpu",
    backends: ["mnn", "ncnn"],
    precisions: ["fp32"],
    queue: "arm64",
    enabled: true,
    needs: "an aarch64 CPU",
    served_by: [],
    service_note: "No worker serves arm-cpu-mnn, which needs an aarch64 CPU: its steps wait until one connects.",
  },
] as unknown as HardwareProfile[];
const teams = [
  { slug: "vision", name: "Vision", role: "data_scientist", four_eyes: true, reviewers: 2 },
  { slug: "fraud", name: "Fraud", role: "admin", four_eyes: true, reviewers: 2 },
];

function controlledUpload() {
  let progress: (p: UploadProgress) => void = () => undefined;
  let resolve: (v: VersionDetail) => void = () => undefined;
  let reject: (e: unknown) => void = () => undefined;
  const upload = vi.fn((_model: string, _form: FormData, onProgress: (p: UploadProgress) => void): UploadHandle => {
    progress = onProgress;
    const promise = new Promise<VersionDetail>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, abort: vi.fn() };
  });
  return {
    upload,
    progress: (p: UploadProgress) => progress(p),
    resolve: (v: VersionDetail) => resolve(v),
    reject: (e: unknown) => reject(e),
  };
}

describe("UploadForm", () => {
  it("marks a profile nothing serves and says why once it is chosen", async () => {
    const user = userEvent.setup();
    const { upload } = controlledUpload();
    render(<UploadForm teams={teams} profiles={profiles} models={[]} upload={upload} onUploaded={vi.fn()} />);
    const arm = screen.getByRole("checkbox", { name: /ARM CPU/ });
    expect(arm.closest("label")!.textContent).toContain("nothing serves it yet");
    expect(screen.queryByText(/No worker serves/)).toBeNull();
    await user.click(arm);
    expect(screen.getByText(/No worker serves arm-cpu-mnn/).getAttribute("role")).toBe("status");
  });

  it("says what is missing instead of sending", async () => {
    const user = userEvent.setup();
    const { upload } = controlledUpload();
    render(<UploadForm teams={teams} profiles={profiles} models={[]} upload={upload} onUploaded={vi.fn()} />);
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    expect(upload).not.toHaveBeenCalled();
    expect(screen.getByText("Choose the model file to upload, or drop it here.")).toBeTruthy();
    expect(screen.getByLabelText("Model").getAttribute("aria-invalid")).toBe("true");
    expect(screen.getByText("You are in several teams: choose the one this model belongs to.")).toBeTruthy();
  });

  it("takes a dropped file, shows real upload progress, then hands over the version", async () => {
    const user = userEvent.setup();
    const control = controlledUpload();
    const onUploaded = vi.fn();
    render(
      <UploadForm
        teams={teams}
        profiles={profiles}
        models={[{ slug: "mlp", team: "vision" }]}
        upload={control.upload}
        onUploaded={onUploaded}
      />,
    );
    const model = new File([new Uint8Array(2048)], "mlp.onnx");
    fireEvent.drop(screen.getByTestId("dropzone"), { dataTransfer: { files: [model] } });
    expect(screen.getByText("mlp.onnx")).toBeTruthy();
    await user.type(screen.getByLabelText("Model"), "My MLP");
    await user.tab(); // the name becomes a slug when the field is left
    expect((screen.getByLabelText("Model") as HTMLInputElement).value).toBe("my-mlp");
    await user.selectOptions(screen.getByLabelText("Team"), "vision");
    await user.click(screen.getByRole("checkbox", { name: /NVIDIA GPU/ }));
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));

    expect(control.upload).toHaveBeenCalledTimes(1);
    const [slug, form] = control.upload.mock.calls[0] as unknown as [string, FormData];
    expect(slug).toBe("my-mlp");
    expect((form.get("file") as File).name).toBe("mlp.onnx");
    expect(form.get("team")).toBe("vision");
    expect(form.get("profiles")).toBe("nvidia-gpu");

    act(() => control.progress({ loaded: 512, total: 2048 }));
    const bar = screen.getByRole("progressbar", { name: "Upload progress" });
    expect(bar.getAttribute("aria-valuenow")).toBe("25");
    expect(screen.getByText(/Uploading 512 B of 2.0 KiB \(25%\)/)).toBeTruthy();
    expect((screen.getByRole("button", { name: "Uploading…" }) as HTMLButtonElement).disabled).toBe(true);

    await act(async () => control.resolve({ id: 7 } as VersionDetail));
    expect(onUploaded).toHaveBeenCalledWith({ id: 7 });
  });

  it("shows the API's sentence when the server refuses the file", async () => {
    const user = userEvent.setup();
    const control = controlledUpload();
    render(
      <UploadForm teams={[teams[0]!]} profiles={profiles} models={[]} upload={control.upload} onUploaded={vi.fn()} />,
    );
    await user.upload(screen.getByLabelText(/Choose a file/), new File([new Uint8Array([1, 2, 3])], "notes.txt"));
    await user.type(screen.getByLabelText("Model"), "mlp");
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    // one team: it is sent without asking
    expect((control.upload.mock.calls[0]?.[1] as FormData).get("team")).toBe("vision");
    const refusal = new ApiError(400, {
      code: "invalid",
      message: "file: notes.txt is not a model Slipway can read: it is not ONNX, a zip, or a framework format.",
      fields: { file: ["notes.txt is not a model Slipway can read: it is not ONNX, a zip, or a framework format."] },
    });
    await act(async () => control.reject(refusal));
    expect(screen.getByRole("alert").textContent).toContain("The upload did not go through");
    expect(screen.getByRole("alert").textContent).toContain("file: notes.txt is not a model Slipway can read");
    expect(
      screen.getByText("notes.txt is not a model Slipway can read: it is not ONNX, a zip, or a framework format."),
    ).toBeTruthy();
    expect(screen.getByRole("button", { name: "Upload and start the pipeline" })).toBeTruthy();
  });
});

describe("UploadForm: inputs and outputs", () => {
  const inputDeclarations = '{"inputs": {"sr": {"values": [8000, 16000]}}, "dims": {"samples": {"typical": 512}}}';
  const outputDeclarations = '{"detections": {"kind": "detection", "boxes": [0, 4], "scores": [4, 84]}}';

  async function fillRequired(user: ReturnType<typeof userEvent.setup>) {
    await user.upload(screen.getByLabelText(/Choose a file/), new File([new Uint8Array([8, 1])], "vad.onnx"));
    await user.type(screen.getByLabelText("Model"), "vad");
  }

  it("sends both declarations as the API's form fields", async () => {
    const user = userEvent.setup();
    const control = controlledUpload();
    render(
      <UploadForm teams={[teams[0]!]} profiles={profiles} models={[]} upload={control.upload} onUploaded={vi.fn()} />,
    );
    await fillRequired(user);
    const inputs = screen.getByLabelText("Input declarations (JSON)");
    const outputs = screen.getByLabelText("Output declarations (JSON)");
    // each shows an example and says what it is for
    expect(inputs.getAttribute("placeholder")).toContain('"batch_axis": 1');
    expect(outputs.getAttribute("placeholder")).toContain('"kind": "detection"');
    expect(screen.getByText(/Undeclared outputs get the kind inspection proposes/)).toBeTruthy();
    await user.click(inputs);
    await user.paste(inputDeclarations);
    await user.click(outputs);
    await user.paste(outputDeclarations);
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    expect(control.upload).toHaveBeenCalledTimes(1);
    const form = control.upload.mock.calls[0]?.[1] as FormData;
    expect(form.get("input_declarations")).toBe(inputDeclarations);
    expect(form.get("output_declarations")).toBe(outputDeclarations);
  });

  it("refuses declarations that are not JSON, saying so next to the field", async () => {
    const user = userEvent.setup();
    const control = controlledUpload();
    render(
      <UploadForm teams={[teams[0]!]} profiles={profiles} models={[]} upload={control.upload} onUploaded={vi.fn()} />,
    );
    await fillRequired(user);
    const inputs = screen.getByLabelText("Input declarations (JSON)");
    await user.click(inputs);
    await user.paste('{"inputs": {"sr": {"values": [8000, 16000]}}');
    const outputs = screen.getByLabelText("Output declarations (JSON)");
    await user.click(outputs);
    await user.paste('{"detections": {"kind": "boxes"}}');
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    expect(control.upload).not.toHaveBeenCalled();
    expect(inputs.getAttribute("aria-invalid")).toBe("true");
    expect(inputs.closest("details")?.open).toBe(true); // the section opens to show what is wrong
    const inputError = document.getElementById(inputs.getAttribute("aria-describedby") as string);
    expect(inputError?.textContent).toMatch(
      /^The input declarations are not valid JSON \(.+\)\. Write them like \{"inputs"/,
    );
    const outputError = document.getElementById(outputs.getAttribute("aria-describedby") as string);
    expect(outputError?.textContent).toBe(
      "Output 'detections' has kind \"boxes\"; the kinds are classifier, detection, embedding, segmentation, regression, raw.",
    );
  });

  it("shows the server's refusal of a declaration next to that field", async () => {
    const user = userEvent.setup();
    const control = controlledUpload();
    render(
      <UploadForm teams={[teams[0]!]} profiles={profiles} models={[]} upload={control.upload} onUploaded={vi.fn()} />,
    );
    await fillRequired(user);
    const inputs = screen.getByLabelText("Input declarations (JSON)");
    await user.click(inputs);
    await user.paste('{"inputs": {"sr": {"range": [16000, 8000]}}}');
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    expect(control.upload).toHaveBeenCalledTimes(1);
    // what the API answers (apps/registry/services.py: ApiError with the engine's code and sentence)
    const message =
      "The input declarations are not valid: input 'sr' needs 'range' as [low, high] with low <= high. Example: " +
      '{"inputs": {"images": {"kind": "image", "range": [0, 1]}}}';
    await act(async () => control.reject(new ApiError(400, { code: "invalid_declarations", message, fields: {} })));
    const error = document.getElementById(inputs.getAttribute("aria-describedby") as string);
    expect(error?.className).toBe("field-error");
    expect(error?.textContent).toBe(message);
    expect(inputs.getAttribute("aria-invalid")).toBe("true");
    // a field error DRF names (the JSON itself unreadable) lands there too
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    await act(async () =>
      control.reject(
        new ApiError(400, {
          code: "invalid",
          message: "output_declarations: Value must be valid JSON.",
          fields: { output_declarations: ["Value must be valid JSON."] },
        }),
      ),
    );
    const outputs = screen.getByLabelText("Output declarations (JSON)");
    expect(document.getElementById(outputs.getAttribute("aria-describedby") as string)?.textContent).toBe(
      "Value must be valid JSON.",
    );
  });
});

describe("UploadForm: a format without an input signature", () => {
  const signature = '[{"name": "x", "shape": ["batch", 8], "dtype": "float32"}]';

  it("asks for a TorchScript file's signature up front and sends nothing without it", async () => {
    const user = userEvent.setup();
    const control = controlledUpload();
    render(
      <UploadForm teams={[teams[0]!]} profiles={profiles} models={[]} upload={control.upload} onUploaded={vi.fn()} />,
    );
    const field = () => screen.getByLabelText("Input signature (JSON)");
    expect(field().closest("details")).not.toBeNull(); // an ONNX user never needs it: under Advanced
    await user.upload(screen.getByLabelText(/Choose a file/), zipFile(TORCHSCRIPT_MEMBERS, "mlp.pt"));
    await user.type(screen.getByLabelText("Model"), "mlp");
    await screen.findByText(/This is a TorchScript file, which does not record its input shapes/);
    expect(field().closest("details")).toBeNull();
    expect(field().getAttribute("placeholder")).toBe(
      '[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]',
    );

    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    expect(control.upload).not.toHaveBeenCalled();
    expect(field().getAttribute("aria-invalid")).toBe("true");
    const error = document.getElementById(field().getAttribute("aria-describedby") as string);
    expect(error?.textContent).toMatch(/^mlp\.pt is a TorchScript file, which does not record its input shapes/);

    await user.click(field());
    await user.paste(signature);
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    expect(control.upload).toHaveBeenCalledTimes(1);
    expect((control.upload.mock.calls[0]?.[1] as FormData).get("inputs")).toBe(signature);
  });

  it("asks for an MXNet model's signature without insisting: the symbol may record it", async () => {
    const user = userEvent.setup();
    const control = controlledUpload();
    render(
      <UploadForm teams={[teams[0]!]} profiles={profiles} models={[]} upload={control.upload} onUploaded={vi.fn()} />,
    );
    await user.upload(
      screen.getByLabelText(/Choose a file/),
      zipFile(["resnet-symbol.json", "resnet-0010.params"], "resnet.zip"),
    );
    await user.type(screen.getByLabelText("Model"), "resnet");
    await screen.findByText(/This is an MXNet model, whose symbol rarely records its input shapes/);
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    expect(control.upload).toHaveBeenCalledTimes(1);
  });

  it("brings the signature field up front when the server says it needs one", async () => {
    const user = userEvent.setup();
    const control = controlledUpload();
    render(
      <UploadForm teams={[teams[0]!]} profiles={profiles} models={[]} upload={control.upload} onUploaded={vi.fn()} />,
    );
    await user.upload(screen.getByLabelText(/Choose a file/), new File([new Uint8Array([8, 1])], "net.bin"));
    await user.type(screen.getByLabelText("Model"), "net");
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    const message =
      "This MXNet symbol records no input shapes (no variable has a __shape__), so Slipway needs them at upload: " +
      'send the \'inputs\' field with each input\'s name, shape and dtype, for example inputs=[{"name": "data", ' +
      '"shape": ["batch", 3, 224, 224], "dtype": "float32"}] with your model\'s sizes. Nothing was stored.';
    await act(async () => control.reject(new ApiError(400, { code: "inputs_required", message, fields: {} })));
    const field = screen.getByLabelText("Input signature (JSON)");
    expect(field.closest("details")).toBeNull();
    expect(document.getElementById(field.getAttribute("aria-describedby") as string)?.textContent).toBe(message);
  });
});
