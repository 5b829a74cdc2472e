// "Try it": run the original model and chosen variants on a file the user gives (an image, WAV,
// .npz or JSON), by a worker in the sandbox, and show what came out side by side: the top classes
// of a classifier, the boxes of a detector drawn on the image, a summary of other outputs, and how
// each variant differs from the original. An image's preprocessing is prefilled from the
// inspection's input plan and may be changed; the result says what was applied.
import { useEffect, useId, useRef, useState } from "react";
import { ApiError, apiUrl, csrfToken, errorFrom, get, networkError } from "../api/client";
import type { components } from "../api/schema";
import { Badge, ErrorMessage, Notice } from "../components/ui";
import { useResource } from "../lib/hooks";

export type Trial = components["schemas"]["Trial"];

export interface OutputStats {
  min: number | null;
  max: number | null;
  mean: number | null;
  nonfinite: number;
  first: (number | null)[];
}

export interface OutputSummary {
  name: string;
  shape: number[];
  dtype: string;
  kind: string;
  kind_source?: string;
  top?: { class: number; probability: number; score: number }[];
  scores?: string;
  boxes?: { class: number; score: number; box: [number, number, number, number] }[];
  detections?: number;
  box_frame?: string;
  stats: OutputStats;
}

export interface OutputDifference {
  name: string;
  max_abs_error: number | null;
  cosine: number | null;
  top1_agreement: number | null;
  topk_agreement?: number | null;
  detection?: { recall: number | null; precision: number | null; matched: number } | null;
}

export interface ModelRun {
  backend: string;
  outputs?: OutputSummary[];
  difference?: { within_default_tolerance: boolean; reasons: string[]; outputs: OutputDifference[] };
  error?: string;
}

export interface TrialResult {
  input: { kind: string; applied: string[]; image_size: [number, number] | null };
  original: ModelRun;
  variants: Record<string, ModelRun>;
}

export interface Preprocessing {
  size: [number, number];
  layout: "NCHW" | "NHWC";
  channel_order: "RGB" | "BGR" | "GRAY";
  scale: number;
  mean: number[];
  std: number[];
  dtype: string;
  resample: string;
}

const MAX_BYTES = 20 * 2 ** 20;
const POLL_MS = 1000;

/** GET /versions/{id}/trials/defaults/: the preprocessing a trial applies unless told otherwise,
 * from the input plan (apps/pipeline/trials.py `proposed_preprocessing`), or null and why not. */
interface Proposal {
  preprocessing: Preprocessing | null;
  note: string;
}

function numbers(text: string): number[] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
}

function isImage(file: File): boolean {
  return /^image\/(png|jpeg)$/.test(file.type) || /\.(png|jpe?g)$/i.test(file.name);
}

async function requestTrial(versionId: number, form: FormData): Promise<Trial> {
  let response: Response;
  try {
    response = await fetch(apiUrl(`versions/${versionId}/trials/`), {
      method: "POST",
      body: form,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
  } catch {
    throw networkError();
  }
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()) as Trial;
}

function format(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined) return "–";
  if (Math.abs(value) >= 1e4 || (value !== 0 && Math.abs(value) < 1e-3)) return value.toExponential(2);
  return Number(value.toFixed(digits)).toString();
}

function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`;
}

const BOX_COLOURS = ["#b42318", "#0b5cad", "#1a7f37", "#8a4b00", "#6f42c1", "#0e6b74"];

/** The image with the detector's boxes drawn over it; each box labelled with class and score. */
function BoxedImage({
  src,
  size,
  output,
  model,
}: {
  src: string;
  size: [number, number];
  output: OutputSummary;
  model: string;
}) {
  const boxes = output.boxes ?? [];
  const [width, height] = size;
  const stroke = Math.max(2, Math.round(Math.max(width, height) / 200));
  const font = Math.max(12, Math.round(Math.max(width, height) / 30));
  return (
    <figure className="trial-figure">
      <div className="trial-image">
        <img src={src} alt={`Your image, as ${model} saw it`} />
        <svg
          viewBox={`0 0 ${width} ${height}`}
          preserveAspectRatio="none"
          role="img"
          aria-label={`${boxes.length} box${boxes.length === 1 ? "" : "es"} found by ${model} on output ${output.name}`}
        >
          {boxes.map((b, i) => {
            const [x1, y1, x2, y2] = b.box;
            const colour = BOX_COLOURS[b.class % BOX_COLOURS.length];
            const label = `class ${b.class} ${(b.score * 100).toFixed(0)}%`;
            return (
              <g key={i}>
                <rect x={x1} y={y1} width={x2 - x1} height={y2 - y1} fill="none" stroke={colour} strokeWidth={stroke} />
                <rect
                  x={x1}
                  y={Math.max(0, y1 - font * 1.3)}
                  width={label.length * font * 0.6}
                  height={font * 1.3}
                  fill={colour}
                />
                <text x={x1 + font * 0.2} y={Math.max(font, y1 - font * 0.3)} fill="#ffffff" fontSize={font}>
                  {label}
                </text>
              </g>
            );
          })}
        </svg>
      </div>
      <figcaption className="small muted">
        {output.detections ?? boxes.length} detection{(output.detections ?? boxes.length) === 1 ? "" : "s"} on{" "}
        {output.name}, in {output.box_frame}.
      </figcaption>
    </figure>
  );
}

function OutputView({
  output,
  image,
  model,
}: {
  output: OutputSummary;
  image?: { src: string; size: [number, number] };
  model: string;
}) {
  return (
    <div className="trial-output">
      <h4 className="h4">
        {output.name}{" "}
        <span className="muted small">
          ({output.kind}, {output.shape.join("×") || "scalar"} {output.dtype})
        </span>
      </h4>
      {output.top ? (
        <div className="table-scroll" tabIndex={0}>
          <table className="table table-compact">
            <caption>
              Top {output.top.length} classes by {model}; {output.scores}
            </caption>
            <thead>
              <tr>
                <th scope="col">Rank</th>
                <th scope="col">Class</th>
                <th scope="col">Probability</th>
                <th scope="col">Score</th>
              </tr>
            </thead>
            <tbody>
              {output.top.map((row, i) => (
                <tr key={row.class}>
                  <td>{i + 1}</td>
                  <td>{row.class}</td>
                  <td>{percent(row.probability)}</td>
                  <td>{format(row.score)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {output.boxes ? (
        <>
          {image ? <BoxedImage src={image.src} size={image.size} output={output} model={model} /> : null}
          <div className="table-scroll" tabIndex={0}>
            <table className="table table-compact">
              <caption>Boxes by {model} (x1, y1, x2, y2)</caption>
              <thead>
                <tr>
                  <th scope="col">Class</th>
                  <th scope="col">Score</th>
                  <th scope="col">Box</th>
                </tr>
              </thead>
              <tbody>
                {output.boxes.slice(0, 20).map((b, i) => (
                  <tr key={i}>
                    <td>{b.class}</td>
                    <td>{percent(b.score)}</td>
                    <td>{b.box.map((v) => v.toFixed(0)).join(", ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : null}
      <p className="small">
        min {format(output.stats.min)}, max {format(output.stats.max)}, mean {format(output.stats.mean)}
        {output.stats.nonfinite ? `, ${output.stats.nonfinite} not finite` : ""}; first values{" "}
        <code>{output.stats.first.map((v) => format(v)).join(", ")}</code>
      </p>
    </div>
  );
}

function DifferenceView({ run }: { run: ModelRun }) {
  if (!run.difference) return null;
  const d = run.difference;
  return (
    <div className="trial-difference">
      <p>
        {d.within_default_tolerance ? (
          <Badge tone="ok">Same as the original within the default tolerance</Badge>
        ) : (
          <Badge tone="warn">Differs from the original</Badge>
        )}
      </p>
      <div className="table-scroll" tabIndex={0}>
        <table className="table table-compact">
          <caption>Difference from the original on this input</caption>
          <thead>
            <tr>
              <th scope="col">Output</th>
              <th scope="col">Max abs error</th>
              <th scope="col">Cosine</th>
              <th scope="col">Top-1 agrees</th>
              <th scope="col">Detections matched</th>
            </tr>
          </thead>
          <tbody>
            {d.outputs.map((o) => (
              <tr key={o.name}>
                <td>{o.name}</td>
                <td>{format(o.max_abs_error)}</td>
                <td>{format(o.cosine, 6)}</td>
                <td>{o.top1_agreement === null ? "–" : o.top1_agreement === 1 ? "yes" : "no"}</td>
                <td>{o.detection ? `${o.detection.matched} (recall ${percent(o.detection.recall)})` : "–"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {d.reasons.length ? (
        <ul className="small">
          {d.reasons.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

export function TrialResults({ result, imageSrc }: { result: TrialResult; imageSrc?: string }) {
  const size = result.input.image_size;
  const image = imageSrc && size ? { src: imageSrc, size } : undefined;
  const runs: [string, ModelRun][] = [["original", result.original], ...Object.entries(result.variants)];
  return (
    <>
      <div className="small">
        <strong>Input as applied:</strong>
        <ul>
          {result.input.applied.map((line) => (
            <li key={line}>
              <code>{line}</code>
            </li>
          ))}
        </ul>
      </div>
      <div className="trial-runs">
        {runs.map(([name, run]) => (
          <article key={name} className="trial-run" aria-labelledby={`trial-${name}`}>
            <h3 className="h3" id={`trial-${name}`}>
              {name} <span className="muted small">({run.backend || "unknown backend"})</span>
            </h3>
            {run.error ? <ErrorMessage error={run.error} title={`${name} could not run`} /> : null}
            {(run.outputs ?? []).map((output) => (
              <OutputView key={output.name} output={output} image={image} model={name} />
            ))}
            <DifferenceView run={run} />
          </article>
        ))}
      </div>
    </>
  );
}

function PreprocessingForm({ value, onChange }: { value: Preprocessing; onChange: (next: Preprocessing) => void }) {
  const id = useId();
  const [mean, setMean] = useState(value.mean.join(", "));
  const [std, setStd] = useState(value.std.join(", "));
  return (
    <fieldset className="fieldset trial-prep">
      <legend>Image preprocessing (from the model's input plan; change what differs)</legend>
      <div className="field">
        <label htmlFor={`${id}-h`}>Height</label>
        <input
          id={`${id}-h`}
          className="input"
          type="number"
          min={1}
          value={value.size[0]}
          onChange={(e) => onChange({ ...value, size: [Number(e.target.value), value.size[1]] })}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-w`}>Width</label>
        <input
          id={`${id}-w`}
          className="input"
          type="number"
          min={1}
          value={value.size[1]}
          onChange={(e) => onChange({ ...value, size: [value.size[0], Number(e.target.value)] })}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-layout`}>Layout</label>
        <select
          id={`${id}-layout`}
          className="input"
          value={value.layout}
          onChange={(e) => onChange({ ...value, layout: e.target.value as Preprocessing["layout"] })}
        >
          <option>NCHW</option>
          <option>NHWC</option>
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-order`}>Channel order</label>
        <select
          id={`${id}-order`}
          className="input"
          value={value.channel_order}
          onChange={(e) => onChange({ ...value, channel_order: e.target.value as Preprocessing["channel_order"] })}
        >
          <option>RGB</option>
          <option>BGR</option>
          <option>GRAY</option>
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-scale`}>Scale</label>
        <input
          id={`${id}-scale`}
          className="input"
          type="number"
          step="any"
          value={value.scale}
          onChange={(e) => onChange({ ...value, scale: Number(e.target.value) })}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-mean`}>Mean per channel</label>
        <input
          id={`${id}-mean`}
          className="input"
          value={mean}
          onChange={(e) => {
            setMean(e.target.value);
            onChange({ ...value, mean: numbers(e.target.value) });
          }}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-std`}>Std per channel</label>
        <input
          id={`${id}-std`}
          className="input"
          value={std}
          onChange={(e) => {
            setStd(e.target.value);
            onChange({ ...value, std: numbers(e.target.value) });
          }}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-dtype`}>Data type</label>
        <select
          id={`${id}-dtype`}
          className="input"
          value={value.dtype}
          onChange={(e) => onChange({ ...value, dtype: e.target.value })}
        >
          <option>float32</option>
          <option>float16</option>
          <option>uint8</option>
          <option>int8</option>
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-resample`}>Resize filter</label>
        <select
          id={`${id}-resample`}
          className="input"
          value={value.resample}
          onChange={(e) => onChange({ ...value, resample: e.target.value })}
        >
          <option>bilinear</option>
          <option>nearest</option>
          <option>bicubic</option>
        </select>
      </div>
    </fieldset>
  );
}

export function Playground({
  versionId,
  inspected,
  variants,
  canRun,
}: {
  versionId: number;
  /** Whether the version's inspection has finished (its input plan is what a trial starts from). */
  inspected: boolean;
  variants: string[];
  canRun: boolean;
}) {
  const id = useId();
  const proposal = useResource(
    (signal) =>
      inspected
        ? get<Proposal>(`versions/${versionId}/trials/defaults/`, undefined, signal)
        : Promise.resolve(undefined),
    [versionId, inspected],
  );
  const [file, setFile] = useState<File | null>(null);
  const [preview, setPreview] = useState<string | undefined>();
  const [edited, setPrep] = useState<Preprocessing | null>(null);
  const prep = edited ?? proposal.data?.preprocessing ?? null;
  const [chosen, setChosen] = useState<string[]>([]);
  const [trial, setTrial] = useState<Trial | undefined>();
  const [error, setError] = useState<ApiError | Error | undefined>();
  const [busy, setBusy] = useState(false);
  const timer = useRef<number | undefined>(undefined);

  useEffect(() => {
    if (!file || !isImage(file)) {
      setPreview(undefined);
      return;
    }
    const url = URL.createObjectURL(file);
    setPreview(url);
    return () => URL.revokeObjectURL(url);
  }, [file]);

  useEffect(() => () => window.clearTimeout(timer.current), []);

  const poll = (trialId: number) => {
    timer.current = window.setTimeout(async () => {
      try {
        const next = await get<Trial>(`trials/${trialId}/`);
        setTrial(next);
        if (next.status === "queued" || next.status === "running") poll(trialId);
      } catch (err) {
        setError(err instanceof Error ? err : new Error(String(err)));
      }
    }, POLL_MS);
  };

  if (!inspected) {
    return <Notice title="Nothing to try yet">The model can be tried once its inspection has finished.</Notice>;
  }

  const run = async () => {
    if (!file) return;
    setError(undefined);
    setTrial(undefined);
    if (file.size > MAX_BYTES) {
      setError(new Error(`The file is ${(file.size / 2 ** 20).toFixed(1)} MiB; a trial takes files up to 20 MiB.`));
      return;
    }
    const form = new FormData();
    form.append("file", file);
    form.append("variants", chosen.join(","));
    if (prep && isImage(file)) form.append("preprocessing", JSON.stringify(prep));
    setBusy(true);
    try {
      const created = await requestTrial(versionId, form);
      setTrial(created);
      poll(created.id);
    } catch (err) {
      setError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      setBusy(false);
    }
  };

  const waiting = trial && (trial.status === "queued" || trial.status === "running");
  const result = trial?.status === "succeeded" ? (trial.result as unknown as TrialResult | null) : null;
  return (
    <div className="playground">
      {!canRun ? (
        <Notice title="Trying needs a data scientist, approver or admin">
          A trial runs the model on the workers; your role in this team can read the results of others' trials only.
        </Notice>
      ) : null}
      <form
        className="trial-form"
        onSubmit={(event) => {
          event.preventDefault();
          void run();
        }}
      >
        <div className="field">
          <label htmlFor={`${id}-file`}>Input file (PNG or JPEG image, WAV, .npz or JSON)</label>
          <input
            id={`${id}-file`}
            className="input"
            type="file"
            accept=".png,.jpg,.jpeg,.wav,.npz,.json,image/png,image/jpeg,audio/wav,application/json"
            onChange={(e) => setFile(e.target.files?.[0] ?? null)}
            disabled={!canRun}
          />
          <p className="small muted">
            JSON: an object of input name to nested list, or a list of token ids. Up to 20 MiB; one sample.
          </p>
        </div>
        {preview ? <img className="trial-preview" src={preview} alt="Preview of the chosen image" /> : null}
        {file && isImage(file) && prep ? <PreprocessingForm value={prep} onChange={setPrep} /> : null}
        {file && isImage(file) && !prep && proposal.data ? (
          <Notice kind="warn">{proposal.data.note || "The worker will say what the model takes."}</Notice>
        ) : null}
        <fieldset className="fieldset">
          <legend>Models to run</legend>
          <label className="field-inline">
            <input type="checkbox" checked disabled /> original (always runs)
          </label>
          {variants.map((name) => (
            <label key={name} className="field-inline">
              <input
                type="checkbox"
                checked={chosen.includes(name)}
                disabled={!canRun}
                onChange={(e) =>
                  setChosen(e.target.checked ? [...chosen, name] : chosen.filter((other) => other !== name))
                }
              />{" "}
              {name}
            </label>
          ))}
          {!variants.length ? <p className="small muted">No variants yet: the original runs alone.</p> : null}
        </fieldset>
        <div className="form-actions">
          <button
            type="submit"
            className="button button-primary"
            disabled={!canRun || !file || busy || Boolean(waiting)}
          >
            Run
          </button>
          {waiting ? (
            <span role="status">
              <Badge tone="busy">{trial.status === "queued" ? "Queued: waiting for a worker" : "Running"}</Badge>
            </span>
          ) : null}
        </div>
      </form>
      {error ? <ErrorMessage error={error} title="The trial could not start" /> : null}
      {trial?.status === "failed" ? <ErrorMessage error={trial.error} title="The trial failed" /> : null}
      {result ? (
        <div role="region" aria-label="Trial results">
          <TrialResults result={result} imageSrc={preview} />
        </div>
      ) : null}
    </div>
  );
}
