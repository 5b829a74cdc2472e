// What the workers store in a version's `reports` and `latest_run`. The benchmark report's
// types are generated from the server's own (workers/engine/reports.py, through the OpenAPI
// schema); the others are still written here by hand from the engine's dataclasses
// (workers/engine/inspection.py, support_matrix.py, backends/base.py, parity.py, recommend.py
// and workers/tasks/steps/) until they move there too. Every field a report may omit is
// optional, so the pages cope with reports from older workers.
import type { components } from "./schema";
import type { JobKind, JobStatus } from "./types";

export interface Job {
  id: number;
  kind: JobKind;
  profile: string | null;
  sequence: number;
  status: JobStatus;
  queue: string;
  progress: number;
  progress_message: string;
  attempt: number;
  max_attempts: number;
  worker_host: string;
  enqueued_at: string | null;
  started_at: string | null;
  heartbeat_at: string | null;
  finished_at: string | null;
  error: string;
  error_code: string;
  // Set while the step is queued or running and no live worker serves its queue (optional:
  // servers before it did not send it).
  worker_note?: string | null;
}

export interface PipelineRun {
  id: number;
  status: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  jobs: Job[];
}

// ---- inspect --------------------------------------------------------------------------
export interface TensorSpec {
  name: string;
  dtype: string;
  shape: (number | string | null)[] | null;
}

export interface InspectReport {
  ir_version?: number;
  opset_imports?: Record<string, number>;
  producer_name?: string;
  producer_version?: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  op_counts?: { domain: string; op_type: string; count: number }[];
  node_count?: number;
  parameters?: { count: number; bytes: number; by_dtype?: { dtype: string; count: number; bytes: number }[] };
  flops?: {
    total: number | null;
    by_op_type?: Record<string, number>;
    assumptions?: string;
    uncounted_op_types?: string[];
  };
  external_data?: unknown[];
  notes?: string[];
  /** How inputs are generated for the model (workers/engine/inputs.py InputPlan.to_dict). */
  input_plan?: InputPlan | null;
  /** What each output is, by output name (workers/engine/outputs.py OutputSemantics). */
  output_semantics?: Record<string, OutputSemantics> | null;
}

/** What one input holds (workers/engine/inputs.py KINDS). */
export type InputKind = "image" | "token_ids" | "attention_mask" | "audio" | "state" | "values" | "features";

/** How one input is made: what it holds, its range or values, and how that was decided. */
export interface InputRecipe {
  name: string;
  dtype: string;
  shape: (number | string | null)[];
  kind: InputKind | string;
  low?: number | null;
  high?: number | null;
  values?: number[];
  /** The axis the samples go on in a calibration or validation array (None: no batch axis). */
  batch_axis?: number | null;
  /** How the kind, range or values were decided ("" when by default). */
  source?: string;
}

export interface InputPlan {
  recipes: InputRecipe[];
  /** A size for every symbolic dim that is not a batch dim (unnamed ones keyed "input:axis"). */
  dims: Record<string, number>;
  batch_symbols?: string[];
  /** What was assumed, each with the declaration that would replace the assumption. */
  assumptions?: string[];
  description?: string;
}

/** What an output is (workers/engine/outputs.py OUTPUT_KINDS). */
export type OutputKind = "classifier" | "detection" | "embedding" | "segmentation" | "regression" | "raw";

/** Where a detection head keeps its boxes and scores along `axis`; columns are [start, stop). */
export interface DetectionLayout {
  axis: number;
  boxes: [number, number];
  scores: [number, number];
  box_format: string;
  objectness?: number | null;
  score_threshold?: number;
  iou_threshold?: number;
  match_iou?: number;
  max_detections?: number;
}

export interface OutputSemantics {
  name: string;
  kind: OutputKind | string;
  /** "declared" at upload, or "proposed" by inspection from the graph. */
  source: "declared" | "proposed" | string;
  why?: string;
  axis?: number;
  top_k?: number;
  detection?: DetectionLayout | null;
}

// ---- validate -------------------------------------------------------------------------
export type SupportStatus = "supported" | "unsupported" | "fallback" | "unknown";
export type Verdict = "full" | "partial" | "none" | "not_installed" | "error";

export interface MatrixCell {
  status: SupportStatus;
  reason: string;
  nodes: string[];
  device: string;
  // The rewrite chain after which this backend runs an op it refuses as uploaded ("" or
  // absent when none does): see workers/engine/remediation.py.
  after_rewrite?: string;
}

export interface MatrixRow {
  domain: string;
  op_type: string;
  cells: Record<string, MatrixCell>;
}

export interface SupportMatrix {
  backends: string[];
  rows: MatrixRow[];
  verdicts: Record<string, Verdict | string>;
  methods?: Record<string, string>;
  remedies?: Record<string, { rewrites: string[]; summary: string }>;
  problems: number;
}

export interface SupportReport {
  backend: string;
  runtime_version: string | null;
  installed: boolean;
  method: string;
  verdict: Verdict | string;
  notes?: string[];
  error?: string;
}

export interface ValidateReport {
  profile: string;
  reports: Record<string, SupportReport>;
  matrix: SupportMatrix;
}

// ---- optimize -------------------------------------------------------------------------
export interface VariantInfo {
  name: string;
  backend: string;
  format: string;
  precision: string;
  pass_name: string;
  /** How the variant was built; `search` (a QuantizationSearch) where a quantization search made
   * it or started from it. Read through src/charts/tradeoff.ts searchRecord, which checks it. */
  options?: Record<string, unknown>;
  artifact_id?: number;
}

/** One candidate model a quantization search judged (workers/engine/mixed_precision.py Candidate). */
export interface SearchCandidateInfo {
  label: string;
  /** "full-int8", "sensitivity" (one group of activations in float), "mix", "round" (a group on top of the best mix so far), "nncf". */
  stage: string;
  /** How many activations (or NNCF quantizers) stayed in float; null where NNCF doesn't say. */
  float_activations: number | null;
  float_share: number | null;
  /** The worst output's score in dB (200: exact); null where no output could be scored. */
  score_db: number | null;
  passed: boolean;
  chosen: boolean;
}

/** A variant's `options.search`: the budget, what was spent, why the search stopped, every candidate. */
export interface QuantizationSearch {
  budget_s: number;
  max_candidates: number;
  spent_s: number;
  activations: number;
  float_unit: "activations" | "quantizers" | string;
  activations_measured?: number;
  /** "passed", "full-int8-passed", "float-share-limit", "no-gain", "not-restored", "budget", "candidates". */
  stopped: string;
  stopped_because: string;
  probe?: string;
  candidates: SearchCandidateInfo[];
}

export interface OptimizeReport {
  profile: string;
  variants: VariantInfo[];
  errors?: Record<string, string>;
  skipped?: Record<string, string>;
  /** Per backend, the variants it did not build and why (no calibration data, a failed conversion...). */
  notes?: Record<string, string[]>;
}

// ---- parity ---------------------------------------------------------------------------
// Generated from the server's report types, as the benchmark's below.
/** One output of a variant against the original's; a metric is null where it could not be computed. */
export type OutputParity = components["schemas"]["OutputParity"];
/** A detection head's decoded detections, the variant's matched against the original's. */
export type DetectionAgreement = components["schemas"]["DetectionAgreement"];
export type VariantParity = components["schemas"]["VariantParityReport"];
export type ParityReport = components["schemas"]["ParityReport"];

// ---- benchmark ------------------------------------------------------------------------
// Generated from the server's report types (workers/engine/reports.py, via docs/openapi.yaml):
// what the server reads a stored report with is what the browser is typed against.
/** One measured (batch size, concurrency) point; intervals are 95% [low, high]. */
export type BenchmarkPoint = components["schemas"]["BenchmarkPoint"];
/** One model measured: the original ("baseline") or a variant; a failed one has an `error`. */
export type BenchmarkRun = components["schemas"]["BenchmarkEntry"];
export type BenchmarkReport = components["schemas"]["BenchmarkReport"];

/** The inputs a report's figures rest on: the user's samples or generated ones, and how made. */
export type EvidenceInputs = components["schemas"]["ReportInputs"];

// ---- recommend ------------------------------------------------------------------------
export interface RankedVariant {
  name: string;
  backend: string;
  precision: string;
  value: number | null;
  p99_ms: number | null;
  batch: number | null;
  concurrency: number | null;
  speedup: number | null;
  reason: string;
  /** The ranking statistic (cpu_ms, p50_ms, throughput, or p99_ms without intervals): `value`
   * lies in [`low`, `high`] (95%), from `samples` timed requests over `trials` fresh processes. */
  statistic?: string | null;
  low?: number | null;
  high?: number | null;
  samples?: number | null;
  trials?: number | null;
  p50_ms?: number | null;
  cpu_ms?: number | null;
  /** Why there is no p99: "not enough samples (180) for p99: it needs at least 1,000". */
  p99_note?: string | null;
  /** The speed-up over the original model with its 95% band, and the same in words. */
  speedup_low?: number | null;
  speedup_high?: number | null;
  speedup_sentence?: string;
  /** The variants it could not be told apart from within the noise. */
  tied_with?: string[];
}

export interface RecommendReport {
  profile: string;
  objective: string;
  budget_ms?: number | null;
  winner: RankedVariant | null;
  runner_up: RankedVariant | null;
  others: RankedVariant[];
  baseline_value?: number | null;
  use_baseline?: boolean;
  summary: string;
  /** What the ranking compared (cpu_ms, p50_ms, throughput, p99_ms) and why that one. */
  statistic?: string;
  statistic_note?: string;
  /** The original model's figure on that statistic, with its 95% interval. */
  baseline_low?: number | null;
  baseline_high?: number | null;
  /** Frozen when the step ran; the version's `previous_approved` is computed when read instead. */
}

export interface Reports {
  import?: Record<string, unknown>;
  inspect?: InspectReport;
  validate?: Record<string, ValidateReport>;
  optimize?: Record<string, OptimizeReport>;
  parity?: Record<string, ParityReport>;
  benchmark?: Record<string, BenchmarkReport>;
  recommend?: Record<string, RecommendReport>;
}

/** The profiles any per-profile report of this version covers, in a stable order. */
export function reportProfiles(reports: Reports): string[] {
  const found = new Set<string>();
  for (const kind of ["validate", "optimize", "parity", "benchmark", "recommend"] as const) {
    for (const profile of Object.keys(reports[kind] ?? {})) found.add(profile);
  }
  return [...found].sort();
}
