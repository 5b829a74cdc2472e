// What the workers store in a version's `reports`: generated from the server's own report types
// (workers/engine/reports.py, through docs/openapi.yaml and `npm run gen:api`), so what the server
// reads a stored report with is what the browser is typed against. Fields a report may omit (older
// workers wrote none) are optional. Only what is not a report's shape is written here: the
// vocabularies the pages label (input and output kinds) and a quantization search's record, which
// a backend keeps among a variant's free-form `options` and src/charts/tradeoff.ts checks on read.
import type { components } from "./schema";

type Schemas = components["schemas"];

// ---- import ---------------------------------------------------------------------------
export type ImportReport = Schemas["ImportReport"];

// ---- inspect --------------------------------------------------------------------------
export type InspectReport = Schemas["InspectReport"];
/** The machine a measuring step ran on (a worker or a device), from its own probe. */
export type MeasuredOn = Schemas["MeasuredOn"];
export type TensorSpec = Schemas["TensorSpec"];
/** How one input is made: what it holds, its range or values, and how that was decided. */
export type InputRecipe = Schemas["InputRecipe"];
export type InputPlan = Schemas["InputPlanReport"];
/** What an output is, declared at upload or proposed by inspection, with its layout. */
export type OutputSemantics = Schemas["OutputSemantics"];
/** Where a detection head keeps its boxes and scores along `axis`; columns are [start, stop). */
export type DetectionLayout = Schemas["DetectionLayout"];

/** What one input holds (workers/engine/inputs.py KINDS). */
export type InputKind = "image" | "token_ids" | "attention_mask" | "audio" | "state" | "values" | "features";
/** What an output is (workers/engine/outputs.py OUTPUT_KINDS). */
export type OutputKind = "classifier" | "detection" | "embedding" | "segmentation" | "regression" | "raw";

// ---- validate -------------------------------------------------------------------------
export type MatrixCell = Schemas["MatrixCell"];
export type SupportStatus = MatrixCell["status"];
export type MatrixRow = Schemas["MatrixRow"];
export type SupportMatrix = Schemas["SupportMatrix"];
export type SupportReport = Schemas["BackendSupport"];
export type Verdict = SupportReport["verdict"];
export type ValidateReport = Schemas["ValidateReport"];

// ---- optimize -------------------------------------------------------------------------
/** How a variant was built; `options.search` (a QuantizationSearch) where a quantization search
 * made it or started from it. */
export type VariantInfo = Schemas["VariantSummary"];
export type OptimizeReport = Schemas["OptimizeReport"];

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

// ---- parity ---------------------------------------------------------------------------
/** One output of a variant against the original's; a metric is null where it could not be computed. */
export type OutputParity = Schemas["OutputParity"];
/** A detection head's decoded detections, the variant's matched against the original's. */
export type DetectionAgreement = Schemas["DetectionAgreement"];
export type VariantParity = Schemas["VariantParityReport"];
export type ParityReport = Schemas["ParityReport"];

// ---- benchmark ------------------------------------------------------------------------
/** One measured (batch size, concurrency) point; intervals are 95% [low, high]. */
export type BenchmarkPoint = Schemas["BenchmarkPoint"];
/** One model measured: the original ("baseline") or a variant; a failed one has an `error`. */
export type BenchmarkRun = Schemas["BenchmarkEntry"];
export type BenchmarkReport = Schemas["BenchmarkReport"];

/** The inputs a report's figures rest on: the user's samples or generated ones, and how made. */
export type EvidenceInputs = Schemas["ReportInputs"];

// ---- recommend ------------------------------------------------------------------------
/** Where one candidate ended up: its ranking statistic with its 95% interval, its speed-up over
 * the original, the variants it could not be told apart from, and why it lost. */
export type RankedVariant = Schemas["CandidateOutcome"];
/** Frozen when the step ran; the version's `previous_approved` is computed when read instead. */
export type RecommendReport = Schemas["RecommendReport"];

export interface Reports {
  import?: ImportReport;
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
