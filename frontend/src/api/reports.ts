// What the workers store in a version's `reports` and `latest_run` (the OpenAPI schema only
// says "object" there). Written from the engine's dataclasses: workers/engine/inspection.py,
// support_matrix.py, backends/base.py, parity.py, benchmark.py, recommend.py and
// workers/tasks/steps.py. Every field a report may omit is optional, so the pages cope with
// reports from older workers.
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
}

// ---- validate -------------------------------------------------------------------------
export type SupportStatus = "supported" | "unsupported" | "fallback" | "unknown";
export type Verdict = "full" | "partial" | "none" | "not_installed" | "error";

export interface MatrixCell {
  status: SupportStatus;
  reason: string;
  nodes: string[];
  device: string;
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
  options?: Record<string, unknown>;
  artifact_id?: number;
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
export interface OutputParity {
  name: string;
  passed: boolean;
  max_abs_error: number | null;
  max_rel_error: number | null;
  p99_abs_error?: number | null;
  cosine: number | null;
  top1_agreement?: number | null;
  reasons?: string[];
  /** The lowest signal-to-noise ratio (dB) of the output's slices, and where it is. */
  worst_slice_sqnr_db?: number | null;
  worst_slice?: string | null;
  /** The whole output's signal-to-noise ratio (dB). */
  sqnr_db?: number | null;
  /** What the output is (workers/engine/outputs.py), and whether it was declared or proposed. */
  kind?: string | null;
  kind_source?: string | null;
  topk_agreement?: number | null;
  top_k?: number | null;
  detection?: DetectionAgreement | null;
  pixel_agreement?: number | null;
  min_row_cosine?: number | null;
  notes?: string[];
}

/** A detection head's decoded detections, the variant's matched against the original's. */
export interface DetectionAgreement {
  images: number;
  reference_detections: number;
  variant_detections: number;
  matched: number;
  recall: number | null;
  precision: number | null;
  mean_score_error: number | null;
  mean_matched_iou: number | null;
  score_threshold: number;
  match_iou: number;
}

export interface VariantParity {
  passed: boolean;
  outputs: OutputParity[];
  reasons: string[];
  samples?: number;
  error?: string;
  backend?: string;
}

export interface ParityReport {
  profile: string;
  tolerance?: Record<string, number | null>;
  inputs?: { samples?: number; source?: string; description?: string; assumptions?: string[] };
  variants: Record<string, VariantParity>;
  passed?: string[];
}

// ---- benchmark ------------------------------------------------------------------------
export interface BenchmarkPoint {
  batch_size: number;
  concurrency: number;
  p50_ms: number;
  p90_ms?: number;
  p95_ms?: number;
  p99_ms: number;
  p99_9_ms?: number;
  mean_ms?: number;
  min_ms?: number;
  max_ms?: number;
  throughput: number;
  requests?: number;
  stable?: boolean;
  samples_ms?: number[];
  peak_rss_bytes?: number | null;
}

export interface BenchmarkRun {
  backend?: string;
  runtime_version?: string;
  load_ms?: number;
  points?: BenchmarkPoint[];
  notes?: string[];
  error?: string;
  peak_rss_bytes?: number | null;
  cpu_model?: string;
}

export interface BenchmarkReport {
  profile: string;
  worker_host?: string;
  config?: { batch_sizes?: number[]; concurrency?: number[] };
  baseline?: BenchmarkRun | null;
  variants: Record<string, BenchmarkRun>;
}

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
}

export interface WinnerFigures {
  name: string;
  value: number | null;
  p99_ms: number | null;
  min_cosine: number | null;
}

export interface Regression {
  previous_version: number;
  previous: WinnerFigures;
  current: WinnerFigures;
  latency_delta_ms: number | null;
  latency_ratio: number | null;
  cosine_delta: number | null;
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
  regression: Regression | null;
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
