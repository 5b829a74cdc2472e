// Upload a model version: drop the file (or choose it), say which model it belongs to, and
// watch the bytes go up. Options most people never need sit under "Advanced".
import { useId, useRef, useState, type DragEvent } from "react";
import { ApiError } from "../api/client";
import type { UploadHandle, UploadProgress } from "../api/upload";
import type { HardwareProfile, TeamRole, VersionDetail } from "../api/types";
import { ErrorMessage, ProgressBar } from "../components/ui";
import { formatBytes } from "../lib/format";
import {
  API_FIELDS,
  EMPTY_UPLOAD,
  ERROR_CODE_FIELDS,
  INPUT_DECLARATIONS_EXAMPLE,
  OUTPUT_DECLARATIONS_EXAMPLE,
  SIGNATURE_EXAMPLE,
  slugify,
  unsignedFormatOf,
  uploadFormData,
  validateUpload,
  type UnsignedFormat,
  type UploadErrors,
  type UploadValues,
} from "./uploadRules";

export interface UploadFormProps {
  teams: TeamRole[];
  profiles: HardwareProfile[];
  models: { slug: string; team: string }[];
  initial?: Partial<UploadValues>;
  upload: (model: string, form: FormData, onProgress: (p: UploadProgress) => void) => UploadHandle;
  onUploaded: (version: VersionDetail) => void;
}

const FORMATS =
  "ONNX (.onnx, or a .zip with model.onnx and its external data), TorchScript or ExportedProgram (.pt, .pt2), a zipped TensorFlow SavedModel, Keras (.keras), TFLite (.tflite), scikit-learn via skops (.skops), XGBoost (.json, .ubj), LightGBM (.txt), or a .zip of a Caffe (.prototxt + .caffemodel), MXNet (-symbol.json + .params) or PaddlePaddle (.json or .pdmodel + .pdiparams) model. Pickles are refused.";

function Field({
  id,
  label,
  error,
  help,
  children,
}: {
  id: string;
  label: string;
  error?: string | undefined;
  help?: string;
  children: React.ReactNode;
}) {
  return (
    <div className={`field${error ? " has-error" : ""}`}>
      <label htmlFor={id}>{label}</label>
      {children}
      {error ? (
        <p className="field-error" id={`${id}-err`}>
          {error}
        </p>
      ) : help ? (
        <p className="help" id={`${id}-help`}>
          {help}
        </p>
      ) : null}
    </div>
  );
}

// Why the form asks for the input signature up front: the chosen file's format records none,
// or the server said it needs one.
const SIGNATURE_HELP: Record<UnsignedFormat | "asked", string> = {
  torchscript:
    'This is a TorchScript file, which does not record its input shapes: give one entry per argument of the module\'s forward, in order, with a name (e.g. "batch") for each dim that varies.',
  mxnet:
    "This is an MXNet model, whose symbol rarely records its input shapes: give each data input's shape (only the first dim, the batch, may vary), unless the symbol sets them with mx.sym.var(..., shape=...).",
  asked: "The server needs this model's input signature: give each input's name, shape and dtype.",
};

function describedBy(id: string, error?: string, help?: boolean): string | undefined {
  if (error) return `${id}-err`;
  return help ? `${id}-help` : undefined;
}

export function UploadForm({ teams, profiles, models, initial, upload, onUploaded }: UploadFormProps) {
  const [values, setValues] = useState<UploadValues>({ ...EMPTY_UPLOAD, ...initial });
  const [errors, setErrors] = useState<UploadErrors>({});
  const [failure, setFailure] = useState<ApiError>();
  const [progress, setProgress] = useState<UploadProgress | null>(null);
  const [dragging, setDragging] = useState(false);
  const [declaring, setDeclaring] = useState(Boolean(initial?.inputDeclarations || initial?.outputDeclarations));
  // Why the signature is asked for up front (see SIGNATURE_HELP); null: it sits under Advanced.
  const [signature, setSignature] = useState<UnsignedFormat | "asked" | null>(null);
  // The chosen file's format, read from its zip directory; submit waits for it.
  const detection = useRef<Promise<UnsignedFormat | null>>(Promise.resolve(null));
  const handle = useRef<UploadHandle | null>(null);
  const ids = {
    model: useId(),
    team: useId(),
    file: useId(),
    notes: useId(),
    objective: useId(),
    budget: useId(),
    batches: useId(),
    concurrency: useId(),
    cosine: useId(),
    abs: useId(),
    inputs: useId(),
    inputDeclarations: useId(),
    outputDeclarations: useId(),
    calibration: useId(),
    validation: useId(),
    models: useId(),
  };
  const needsTeam = teams.length > 1;
  const uploading = progress !== null;
  const set = <K extends keyof UploadValues>(key: K, value: UploadValues[K]) =>
    setValues((v) => ({ ...v, [key]: value }));

  const chooseFile = (file: File | null) => {
    set("file", file);
    setErrors((e) => ({ ...e, file: undefined }));
    const pending = unsignedFormatOf(file);
    detection.current = pending;
    void pending.then((format) => {
      if (detection.current === pending) setSignature(format);
    });
  };

  const onDrop = (event: DragEvent<HTMLDivElement>) => {
    event.preventDefault();
    setDragging(false);
    const file = event.dataTransfer.files?.[0];
    if (file && !uploading) chooseFile(file);
  };

  const submit = async () => {
    const format = await detection.current;
    const found = validateUpload(values, { needsTeam, format });
    setErrors(found);
    setFailure(undefined);
    if (found.inputDeclarations || found.outputDeclarations) setDeclaring(true);
    if (Object.keys(found).length) return;
    const form = uploadFormData({ ...values, team: values.team || (teams.length === 1 ? (teams[0]?.slug ?? "") : "") });
    setProgress({ loaded: 0, total: values.file?.size ?? 0 });
    handle.current = upload(values.model.trim(), form, setProgress);
    try {
      const version = await handle.current.promise;
      onUploaded(version);
    } catch (err) {
      const apiError =
        err instanceof ApiError ? err : new ApiError(0, { code: "error", message: String(err), fields: {} });
      setFailure(apiError);
      const fieldErrors: UploadErrors = {};
      for (const name of [
        "file",
        "notes",
        "team",
        "inputs",
        "inputDeclarations",
        "outputDeclarations",
        "calibration",
        "validation",
      ] as const) {
        const message = apiError.fieldMessage(API_FIELDS[name] ?? name);
        if (message) fieldErrors[name] = message;
      }
      // Errors the engine finds in the declarations come with a code, not a field name.
      const codeField = ERROR_CODE_FIELDS[apiError.code];
      if (codeField && !fieldErrors[codeField]) fieldErrors[codeField] = apiError.message;
      if (fieldErrors.inputDeclarations || fieldErrors.outputDeclarations) setDeclaring(true);
      if (fieldErrors.inputs) setSignature((current) => current ?? "asked");
      setErrors(fieldErrors);
    } finally {
      setProgress(null);
      handle.current = null;
    }
  };

  /** One JSON text area of the declarations: its label, an example as placeholder, and help. */
  const declarationField = (
    field: "inputDeclarations" | "outputDeclarations",
    label: string,
    example: string,
    help: string,
  ) => (
    <Field id={ids[field]} label={label} error={errors[field]} help={help}>
      <textarea
        id={ids[field]}
        className="input mono"
        rows={3}
        placeholder={example}
        value={values[field]}
        disabled={uploading}
        aria-invalid={errors[field] ? true : undefined}
        aria-describedby={describedBy(ids[field], errors[field], true)}
        onChange={(e) => set(field, e.target.value)}
      />
    </Field>
  );

  /** The input signature: up front when the file needs one, under Advanced otherwise. */
  const signatureField = (help: string) => (
    <Field id={ids.inputs} label="Input signature (JSON)" error={errors.inputs} help={help}>
      <textarea
        id={ids.inputs}
        className="input mono"
        rows={2}
        placeholder={SIGNATURE_EXAMPLE}
        value={values.inputs}
        disabled={uploading}
        aria-invalid={errors.inputs ? true : undefined}
        aria-describedby={describedBy(ids.inputs, errors.inputs, true)}
        onChange={(e) => set("inputs", e.target.value)}
      />
    </Field>
  );

  const percent = progress && progress.total ? progress.loaded / progress.total : 0;
  return (
    <form
      className="form upload-form"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <div
        className={`dropzone${dragging ? " is-dragging" : ""}${errors.file ? " has-error" : ""}`}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
        data-testid="dropzone"
      >
        <input
          id={ids.file}
          type="file"
          className="visually-hidden-focusable"
          disabled={uploading}
          aria-describedby={describedBy(ids.file, errors.file, true)}
          onChange={(e) => chooseFile(e.target.files?.[0] ?? null)}
        />
        <div className="dropzone-body">
          {values.file ? (
            <p className="dropzone-file">
              <strong>{values.file.name}</strong> · {formatBytes(values.file.size)}
            </p>
          ) : (
            <p className="dropzone-title">Drop the model file here</p>
          )}
          <label htmlFor={ids.file} className="button">
            {values.file ? "Choose another file" : "Choose a file"}
          </label>
          {errors.file ? (
            <p className="field-error" id={`${ids.file}-err`}>
              {errors.file}
            </p>
          ) : (
            <p className="help" id={`${ids.file}-help`}>
              {FORMATS}
            </p>
          )}
        </div>
      </div>

      <div className="form-grid">
        <Field
          id={ids.model}
          label="Model"
          error={errors.model}
          help="An existing model's slug, or a new name: uploading to a new name registers the model."
        >
          <input
            id={ids.model}
            className="input"
            list={ids.models}
            value={values.model}
            disabled={uploading}
            aria-invalid={errors.model ? true : undefined}
            aria-describedby={describedBy(ids.model, errors.model, true)}
            onChange={(e) => set("model", e.target.value)}
            onBlur={(e) => {
              const slug = slugify(e.target.value);
              if (slug !== e.target.value) set("model", slug);
            }}
          />
          <datalist id={ids.models}>
            {models.map((m) => (
              <option key={`${m.team}/${m.slug}`} value={m.slug}>
                {m.team}
              </option>
            ))}
          </datalist>
        </Field>
        {needsTeam ? (
          <Field id={ids.team} label="Team" error={errors.team}>
            <select
              id={ids.team}
              className="input"
              value={values.team}
              disabled={uploading}
              aria-invalid={errors.team ? true : undefined}
              aria-describedby={describedBy(ids.team, errors.team)}
              onChange={(e) => set("team", e.target.value)}
            >
              <option value="">Choose a team</option>
              {teams.map((t) => (
                <option key={t.slug} value={t.slug}>
                  {t.name || t.slug}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
      </div>

      {signature ? signatureField(`${SIGNATURE_HELP[signature]} For example ${SIGNATURE_EXAMPLE}.`) : null}

      <fieldset className="field fieldset">
        <legend>Hardware profiles</legend>
        <p className="help">
          Variants are built, checked and benchmarked for each profile chosen. None chosen: the server's default.
        </p>
        <div className="checks">
          {profiles
            .filter((p) => p.enabled !== false)
            .map((p) => (
              <label key={p.slug} className="checkbox" title={p.description}>
                <input
                  type="checkbox"
                  disabled={uploading}
                  checked={values.profiles.includes(p.slug)}
                  onChange={(e) =>
                    set(
                      "profiles",
                      e.target.checked ? [...values.profiles, p.slug] : values.profiles.filter((s) => s !== p.slug),
                    )
                  }
                />
                {p.name} <span className="muted small">({p.slug})</span>
                {p.service_note ? <span className="small text-warn"> · nothing serves it yet</span> : null}
              </label>
            ))}
        </div>
        {profiles
          .filter((p) => values.profiles.includes(p.slug) && p.service_note)
          .map((p) => (
            <p key={p.slug} className="help text-warn" role="status">
              {p.service_note}
            </p>
          ))}
      </fieldset>

      <Field id={ids.notes} label="Notes" help="What changed in this version (optional).">
        <textarea
          id={ids.notes}
          className="input"
          rows={2}
          value={values.notes}
          disabled={uploading}
          aria-describedby={`${ids.notes}-help`}
          onChange={(e) => set("notes", e.target.value)}
        />
      </Field>

      <details className="advanced" open={declaring} onToggle={(e) => setDeclaring(e.currentTarget.open)}>
        <summary>Inputs and outputs (optional)</summary>
        <p className="help">
          Say what the model's inputs take and what its outputs are when Slipway can't tell from the file. What you
          leave out is read from the model, and the inspection report says what was assumed.
        </p>
        {declarationField(
          "inputDeclarations",
          "Input declarations (JSON)",
          INPUT_DECLARATIONS_EXAMPLE,
          "Per input: a kind (image, token_ids, attention_mask, audio, state, values, features), a fixed value, values or range, and batch_axis; per symbolic dim: min, max, step and typical size. Used to generate test inputs and to read your .npz files.",
        )}
        {declarationField(
          "outputDeclarations",
          "Output declarations (JSON)",
          OUTPUT_DECLARATIONS_EXAMPLE,
          "Per output: its kind (classifier, detection, embedding, segmentation, regression, raw), so parity judges it by metrics that fit; a detection head also says which columns hold the boxes and which the scores. Undeclared outputs get the kind inspection proposes.",
        )}
      </details>

      <details className="advanced">
        <summary>Advanced: objective, benchmark sweep, tolerance, inputs, calibration</summary>
        <div className="form-grid">
          <Field id={ids.objective} label="Objective">
            <select
              id={ids.objective}
              className="input"
              value={values.objective}
              disabled={uploading}
              onChange={(e) => set("objective", e.target.value as UploadValues["objective"])}
            >
              <option value="p99_latency_batch1">Lowest p99 latency at batch 1</option>
              <option value="throughput_within_p99_budget">Highest throughput within a p99 budget</option>
            </select>
          </Field>
          <Field id={ids.budget} label="p99 budget (ms)" error={errors.p99BudgetMs}>
            <input
              id={ids.budget}
              className="input"
              inputMode="decimal"
              value={values.p99BudgetMs}
              disabled={uploading}
              aria-invalid={errors.p99BudgetMs ? true : undefined}
              aria-describedby={describedBy(ids.budget, errors.p99BudgetMs)}
              onChange={(e) => set("p99BudgetMs", e.target.value)}
            />
          </Field>
          <Field
            id={ids.batches}
            label="Batch sizes"
            error={errors.batchSizes}
            help="e.g. 1, 8, 32 (profile default otherwise)"
          >
            <input
              id={ids.batches}
              className="input"
              value={values.batchSizes}
              disabled={uploading}
              aria-invalid={errors.batchSizes ? true : undefined}
              aria-describedby={describedBy(ids.batches, errors.batchSizes, true)}
              onChange={(e) => set("batchSizes", e.target.value)}
            />
          </Field>
          <Field id={ids.concurrency} label="Concurrency" error={errors.concurrency} help="e.g. 1, 4">
            <input
              id={ids.concurrency}
              className="input"
              value={values.concurrency}
              disabled={uploading}
              aria-invalid={errors.concurrency ? true : undefined}
              aria-describedby={describedBy(ids.concurrency, errors.concurrency, true)}
              onChange={(e) => set("concurrency", e.target.value)}
            />
          </Field>
          <Field
            id={ids.cosine}
            label="Minimum cosine similarity"
            error={errors.minCosine}
            help="e.g. 0.999 (profile default otherwise)"
          >
            <input
              id={ids.cosine}
              className="input"
              inputMode="decimal"
              value={values.minCosine}
              disabled={uploading}
              aria-invalid={errors.minCosine ? true : undefined}
              aria-describedby={describedBy(ids.cosine, errors.minCosine, true)}
              onChange={(e) => set("minCosine", e.target.value)}
            />
          </Field>
          <Field id={ids.abs} label="Maximum absolute error" error={errors.maxAbsError} help="e.g. 0.001">
            <input
              id={ids.abs}
              className="input"
              inputMode="decimal"
              value={values.maxAbsError}
              disabled={uploading}
              aria-invalid={errors.maxAbsError ? true : undefined}
              aria-describedby={describedBy(ids.abs, errors.maxAbsError, true)}
              onChange={(e) => set("maxAbsError", e.target.value)}
            />
          </Field>
        </div>
        {signature
          ? null
          : signatureField(
              'Only for formats without one (TorchScript, most MXNet models), e.g. [{"name": "x", "shape": ["batch", 8], "dtype": "float32"}]',
            )}
        <div className="form-grid">
          <Field
            id={ids.calibration}
            label="Calibration data (.npz)"
            error={errors.calibration}
            help="One array per input, samples on each input's batch axis (declare batch_axis where it is not the first): enables INT8 static quantization."
          >
            <input
              id={ids.calibration}
              type="file"
              accept=".npz"
              className="input"
              disabled={uploading}
              aria-describedby={describedBy(ids.calibration, errors.calibration, true)}
              onChange={(e) => set("calibration", e.target.files?.[0] ?? null)}
            />
          </Field>
          <Field
            id={ids.validation}
            label="Validation inputs (.npz)"
            error={errors.validation}
            help="Inputs the parity check compares every variant on (generated otherwise)."
          >
            <input
              id={ids.validation}
              type="file"
              accept=".npz"
              className="input"
              disabled={uploading}
              aria-describedby={describedBy(ids.validation, errors.validation, true)}
              onChange={(e) => set("validation", e.target.files?.[0] ?? null)}
            />
          </Field>
        </div>
      </details>

      {failure ? <ErrorMessage error={failure} title="The upload did not go through" /> : null}

      <div className="upload-status" aria-live="polite">
        {uploading ? (
          <>
            <ProgressBar value={percent} label="Upload progress" />
            <p className="muted small">
              Uploading {formatBytes(progress?.loaded ?? 0)} of {formatBytes(progress?.total ?? values.file?.size ?? 0)}{" "}
              ({Math.round(percent * 100)}%)
              {percent >= 1 ? " · the server is checking the file…" : ""}
            </p>
          </>
        ) : null}
      </div>
      <div className="form-actions">
        <button type="submit" className="button button-primary" disabled={uploading}>
          {uploading ? "Uploading…" : "Upload and start the pipeline"}
        </button>
        {uploading ? (
          <button type="button" className="button button-quiet" onClick={() => handle.current?.abort()}>
            Cancel upload
          </button>
        ) : null}
      </div>
    </form>
  );
}
