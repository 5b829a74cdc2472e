// The upload form's rules, apart from the component so they are tested on their own. The
// API checks everything again; these catch mistakes before a large file is sent.

export interface UploadValues {
  model: string;
  team: string;
  file: File | null;
  notes: string;
  profiles: string[];
  objective: "p99_latency_batch1" | "throughput_within_p99_budget";
  p99BudgetMs: string;
  batchSizes: string;
  concurrency: string;
  minCosine: string;
  maxAbsError: string;
  inputs: string;
  /** JSON: what the inputs take and the symbolic dims' sizes (the API's `input_declarations`). */
  inputDeclarations: string;
  /** JSON: what each output is (the API's `output_declarations`). */
  outputDeclarations: string;
  calibration: File | null;
  validation: File | null;
}

export const EMPTY_UPLOAD: UploadValues = {
  model: "",
  team: "",
  file: null,
  notes: "",
  profiles: [],
  objective: "p99_latency_batch1",
  p99BudgetMs: "",
  batchSizes: "",
  concurrency: "",
  minCosine: "",
  maxAbsError: "",
  inputs: "",
  inputDeclarations: "",
  outputDeclarations: "",
  calibration: null,
  validation: null,
};

// The examples the form shows and its messages repeat: the shapes the engine reads
// (workers/engine/signature.py parse_input_declarations, workers/engine/outputs.py
// parse_output_declarations).
export const INPUT_DECLARATIONS_EXAMPLE =
  '{"inputs": {"sr": {"values": [8000, 16000]}, "state": {"kind": "state", "batch_axis": 1}}, "dims": {"height": {"typical": 640, "step": 32}}}';
export const OUTPUT_DECLARATIONS_EXAMPLE =
  '{"output0": {"kind": "detection", "boxes": [0, 4], "scores": [4, 84], "box_format": "cxcywh"}}';
export const INPUT_KINDS = ["image", "token_ids", "attention_mask", "audio", "state", "values", "features"] as const;
export const OUTPUT_KINDS = ["classifier", "detection", "embedding", "segmentation", "regression", "raw"] as const;

/** Which form field an API error code belongs to, where the API names no field. */
export const ERROR_CODE_FIELDS: Partial<Record<string, keyof UploadValues>> = {
  invalid_declarations: "inputDeclarations",
  invalid_output_declarations: "outputDeclarations",
  inputs_not_applicable: "inputs",
  inputs_required: "inputs",
};

/** The input signature's shape (the API's `inputs`), as the form shows it. */
export const SIGNATURE_EXAMPLE = '[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]';

/**
 * A format whose file records no input shapes, so the upload needs `inputs`: TorchScript never
 * has them (the API refuses it without), an MXNet symbol rarely does (the API refuses one
 * whose variables carry no __shape__).
 */
export type UnsignedFormat = "torchscript" | "mxnet";

/** The format of a zip's members when it records no input signature; the same tests as the
 * server's sniffers (workers/engine/importers/pytorch.py and side.py). */
export function unsignedFormat(names: readonly string[]): UnsignedFormat | null {
  const inner = (name: string) => (name.includes("/") ? name.slice(name.indexOf("/") + 1) : name);
  const exportedProgram = names.some(
    (name) => inner(name) === "archive_format" || name.endsWith("serialized_exported_program.json"),
  );
  if (!exportedProgram) {
    const roots = new Set(
      names.filter((n) => n.split("/").length === 2 && n.endsWith("/data.pkl")).map((n) => n.split("/")[0]),
    );
    for (const root of roots) {
      if (names.includes(`${root}/constants.pkl`) || names.some((n) => n.startsWith(`${root}/code/`)))
        return "torchscript";
    }
  }
  const files = names.filter((n) => !n.startsWith("__MACOSX/") && !n.endsWith("/")).map((n) => n.toLowerCase());
  if (files.some((n) => n.endsWith("-symbol.json")) && files.some((n) => n.endsWith(".params"))) return "mxnet";
  return null;
}

function readBytes(blob: Blob): Promise<ArrayBuffer> {
  if (typeof blob.arrayBuffer === "function") return blob.arrayBuffer();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as ArrayBuffer);
    reader.onerror = () => reject(reader.error ?? new Error("The file could not be read."));
    reader.readAsArrayBuffer(blob);
  });
}

// A zip's central directory is read whole; a bigger one is left to the server to judge.
const MAX_ZIP_DIRECTORY = 16 * 1024 * 1024;
const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const DIRECTORY_ENTRY = 0x02014b50;

/** The member names of a zip, read from its central directory (no member is unpacked); null
 * when the file is not a zip this can read. */
export async function zipMemberNames(file: Blob): Promise<string[] | null> {
  if (file.size < 22) return null;
  const head = new DataView(await readBytes(file.slice(0, 4)));
  if (head.getUint32(0, true) !== 0x04034b50) return null;
  const tailStart = Math.max(0, file.size - (22 + 0xffff));
  const tail = new DataView(await readBytes(file.slice(tailStart)));
  let at = -1;
  for (let i = tail.byteLength - 22; i >= 0; i--) {
    if (tail.getUint32(i, true) === EOCD) {
      at = i;
      break;
    }
  }
  if (at < 0) return null;
  let size = tail.getUint32(at + 12, true);
  let offset = tail.getUint32(at + 16, true);
  if (offset === 0xffffffff || size === 0xffffffff) {
    // Zip64 (a model over 4 GiB): the locator just before the record points at the real one.
    if (at < 20 || tail.getUint32(at - 20, true) !== ZIP64_LOCATOR) return null;
    const record = Number(tail.getBigUint64(at - 12, true));
    const zip64 = new DataView(await readBytes(file.slice(record, record + 56)));
    if (zip64.byteLength < 56 || zip64.getUint32(0, true) !== ZIP64_EOCD) return null;
    size = Number(zip64.getBigUint64(40, true));
    offset = Number(zip64.getBigUint64(48, true));
  }
  if (size > MAX_ZIP_DIRECTORY || offset + size > file.size) return null;
  const directory = new DataView(await readBytes(file.slice(offset, offset + size)));
  const decoder = new TextDecoder();
  const names: string[] = [];
  let i = 0;
  while (i + 46 <= directory.byteLength && directory.getUint32(i, true) === DIRECTORY_ENTRY) {
    const nameLength = directory.getUint16(i + 28, true);
    const extra = directory.getUint16(i + 30, true);
    const comment = directory.getUint16(i + 32, true);
    names.push(decoder.decode(new Uint8Array(directory.buffer, directory.byteOffset + i + 46, nameLength)));
    i += 46 + nameLength + extra + comment;
  }
  return names;
}

/** Whether the chosen file is a format that records no input signature (see UnsignedFormat). */
export async function unsignedFormatOf(file: File | null): Promise<UnsignedFormat | null> {
  if (!file) return null;
  try {
    const names = await zipMemberNames(file);
    return names ? unsignedFormat(names) : null;
  } catch {
    return null; // unreadable here: the server judges the file
  }
}

/** The API's field names for the form's values, where they differ. */
export const API_FIELDS: Partial<Record<keyof UploadValues, string>> = {
  inputDeclarations: "input_declarations",
  outputDeclarations: "output_declarations",
};

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** JSON text -> the parsed value, or the sentence saying where it is not JSON. */
function parseJson(text: string, what: string, example: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (err) {
    const reason = err instanceof Error ? ` (${err.message})` : "";
    return { error: `The ${what} are not valid JSON${reason}. Write them like ${example}.` };
  }
}

/** The input declarations' shape, checked before upload; the server checks every value again. */
export function checkInputDeclarations(text: string): string | undefined {
  const parsed = parseJson(text, "input declarations", INPUT_DECLARATIONS_EXAMPLE);
  if ("error" in parsed) return parsed.error;
  const data = parsed.value;
  if (!isObject(data))
    return `The input declarations must be a JSON object with "inputs" and/or "dims", e.g. ${INPUT_DECLARATIONS_EXAMPLE}.`;
  const unknown = Object.keys(data).filter((key) => key !== "inputs" && key !== "dims");
  if (unknown.length)
    return `The input declarations take "inputs" and "dims" only; ${unknown.map((k) => `"${k}"`).join(", ")} is not one of them. Put each input under "inputs", e.g. ${INPUT_DECLARATIONS_EXAMPLE}.`;
  for (const key of ["inputs", "dims"] as const) {
    const group = data[key];
    if (group === undefined) continue;
    if (!isObject(group)) return `"${key}" must be an object keyed by ${key === "inputs" ? "input" : "dim"} name.`;
    for (const [name, entry] of Object.entries(group)) {
      if (!isObject(entry))
        return `The declaration of ${key === "inputs" ? "input" : "dim"} '${name}' must be an object.`;
      const kind = entry.kind;
      if (key === "inputs" && kind !== undefined && !(INPUT_KINDS as readonly unknown[]).includes(kind))
        return `Input '${name}' has kind ${JSON.stringify(kind)}; the kinds are ${INPUT_KINDS.join(", ")}.`;
    }
  }
  return undefined;
}

/** The output declarations' shape, checked before upload; the server checks the layout again. */
export function checkOutputDeclarations(text: string): string | undefined {
  const parsed = parseJson(text, "output declarations", OUTPUT_DECLARATIONS_EXAMPLE);
  if ("error" in parsed) return parsed.error;
  const data = parsed.value;
  if (!isObject(data))
    return `The output declarations must be a JSON object keyed by output name, e.g. ${OUTPUT_DECLARATIONS_EXAMPLE}.`;
  for (const [name, entry] of Object.entries(data)) {
    if (!isObject(entry) || entry.kind === undefined)
      return `The declaration of output '${name}' must be an object with a "kind", e.g. ${OUTPUT_DECLARATIONS_EXAMPLE}.`;
    if (!(OUTPUT_KINDS as readonly unknown[]).includes(entry.kind))
      return `Output '${name}' has kind ${JSON.stringify(entry.kind)}; the kinds are ${OUTPUT_KINDS.join(", ")}.`;
    if (entry.kind === "detection" && entry.scores === undefined)
      return `Output '${name}' is declared a detection head without "scores": say which columns hold them, e.g. "scores": [4, 84].`;
  }
  return undefined;
}

export type UploadErrors = Partial<Record<keyof UploadValues, string>>;

const SLUG = /^[-a-zA-Z0-9_]+$/;

/** "1, 8, 32" -> [1, 8, 32]; null when it isn't a list of positive whole numbers. */
export function parseIntList(text: string): number[] | null {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (!parts.length) return null;
  const values = parts.map(Number);
  return values.every((v) => Number.isInteger(v) && v > 0) ? values : null;
}

/** A model name typed by a person -> the slug the URL needs ("My Model" -> "my-model"). */
export function slugify(text: string): string {
  return text
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 100);
}

export function validateUpload(
  values: UploadValues,
  options: { needsTeam: boolean; format?: UnsignedFormat | null },
): UploadErrors {
  const errors: UploadErrors = {};
  const model = values.model.trim();
  if (!model) errors.model = "Name the model this version belongs to (an existing one, or a new name).";
  else if (!SLUG.test(model)) errors.model = "Use letters, digits, hyphens and underscores only, e.g. resnet-50.";
  else if (model.length > 100) errors.model = "Keep the name to 100 characters.";
  if (options.needsTeam && !values.team)
    errors.team = "You are in several teams: choose the one this model belongs to.";
  if (!values.file) errors.file = "Choose the model file to upload, or drop it here.";
  else if (values.file.size === 0) errors.file = `${values.file.name} is empty (0 bytes). Choose the real model file.`;
  if (values.objective === "throughput_within_p99_budget") {
    const budget = Number(values.p99BudgetMs);
    if (!values.p99BudgetMs.trim())
      errors.p99BudgetMs = "The throughput objective needs a p99 latency budget in milliseconds.";
    else if (!Number.isFinite(budget) || budget <= 0)
      errors.p99BudgetMs = "The budget must be a positive number of milliseconds, e.g. 20.";
  } else if (values.p99BudgetMs.trim() && !(Number(values.p99BudgetMs) > 0)) {
    errors.p99BudgetMs = "The budget must be a positive number of milliseconds, e.g. 20.";
  }
  if (values.batchSizes.trim() && !parseIntList(values.batchSizes))
    errors.batchSizes = "Batch sizes are whole numbers above 0, separated by commas, e.g. 1, 8, 32.";
  if (values.concurrency.trim() && !parseIntList(values.concurrency))
    errors.concurrency = "Concurrency levels are whole numbers above 0, separated by commas, e.g. 1, 4.";
  if (values.minCosine.trim()) {
    const v = Number(values.minCosine);
    if (!(v >= 0 && v <= 1)) errors.minCosine = "Minimum cosine similarity is between 0 and 1, e.g. 0.999.";
  }
  if (values.maxAbsError.trim() && !(Number(values.maxAbsError) >= 0))
    errors.maxAbsError = "Maximum absolute error is a number of 0 or more, e.g. 0.001.";
  if (options.format === "torchscript" && values.file && !values.inputs.trim()) {
    errors.inputs = `${values.file.name} is a TorchScript file, which does not record its input shapes: give the input signature, one entry per argument of the module's forward, in order, e.g. ${SIGNATURE_EXAMPLE} with your model's sizes (a name such as "batch" for a dim that varies).`;
  } else if (values.inputs.trim()) {
    try {
      const parsed: unknown = JSON.parse(values.inputs);
      if (!Array.isArray(parsed) || !parsed.every((i) => i && typeof i === "object" && "name" in i && "shape" in i)) {
        errors.inputs = 'Give a JSON list of inputs, e.g. [{"name": "x", "shape": ["batch", 8], "dtype": "float32"}].';
      }
    } catch {
      errors.inputs = 'This is not valid JSON. Example: [{"name": "x", "shape": ["batch", 8], "dtype": "float32"}].';
    }
  }
  if (values.inputDeclarations.trim()) {
    const problem = checkInputDeclarations(values.inputDeclarations);
    if (problem) errors.inputDeclarations = problem;
  }
  if (values.outputDeclarations.trim()) {
    const problem = checkOutputDeclarations(values.outputDeclarations);
    if (problem) errors.outputDeclarations = problem;
  }
  return errors;
}

/** The multipart body POST /api/v1/models/{slug}/versions/ takes. */
export function uploadFormData(values: UploadValues): FormData {
  const form = new FormData();
  if (values.file) form.append("file", values.file, values.file.name);
  if (values.notes.trim()) form.append("notes", values.notes.trim());
  if (values.team) form.append("team", values.team);
  if (values.profiles.length) form.append("profiles", values.profiles.join(","));
  form.append("objective", values.objective);
  if (values.p99BudgetMs.trim()) form.append("p99_budget_ms", String(Number(values.p99BudgetMs)));
  const benchmark: Record<string, number[]> = {};
  const batches = parseIntList(values.batchSizes);
  const concurrency = parseIntList(values.concurrency);
  if (batches) benchmark.batch_sizes = batches;
  if (concurrency) benchmark.concurrency = concurrency;
  if (Object.keys(benchmark).length) form.append("benchmark", JSON.stringify(benchmark));
  const tolerance: Record<string, number> = {};
  if (values.minCosine.trim()) tolerance.min_cosine = Number(values.minCosine);
  if (values.maxAbsError.trim()) tolerance.max_abs_error = Number(values.maxAbsError);
  if (Object.keys(tolerance).length) form.append("tolerance", JSON.stringify(tolerance));
  if (values.inputs.trim()) form.append("inputs", values.inputs.trim());
  if (values.inputDeclarations.trim()) form.append("input_declarations", values.inputDeclarations.trim());
  if (values.outputDeclarations.trim()) form.append("output_declarations", values.outputDeclarations.trim());
  if (values.calibration) form.append("calibration", values.calibration, values.calibration.name);
  if (values.validation) form.append("validation", values.validation, values.validation.name);
  return form;
}
