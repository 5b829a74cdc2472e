// Names for the API's shapes, taken from the types generated from docs/openapi.yaml
// (src/api/schema.d.ts, `npm run gen:api`); the step reports' are in src/api/reports.ts. Where
// the schema only says "JSON object" (a version's latest run with its jobs), the shape the
// serializer builds is written here.
import type { Reports } from "./reports";
import type { components } from "./schema";

type S = components["schemas"];

/** A step of a version's latest run, as the version's `latest_run` lists it. */
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
  // Queued: its place in its queue (1 is next) and the steps ahead; queued or running: the
  // estimate and what it comes from (optional: servers before them did not send them).
  queue_position?: number | null;
  ahead?: number | null;
  estimate?: JobEstimate | null;
}

export interface PipelineRun {
  id: number;
  status: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  jobs: Job[];
}

export type Team = S["Team"];
export type Me = S["Me"];
export type TeamRole = S["TeamRole"];
export type VersionSummary = S["VersionSummary"];
// The schema types these three as "object"; they hold the shapes the serializers build.
export type Model = Omit<S["Model"], "latest_version"> & { readonly latest_version: VersionSummary | null };
export type VersionDetail = Omit<S["VersionDetail"], "latest_run" | "reports" | "approval"> & {
  readonly latest_run: PipelineRun | null;
  readonly reports: Reports;
  readonly approval: S["ApprovalState"];
};
export type VersionStatus = S["VersionStatusEnum"];
export type Framework = S["FrameworkEnum"];
export type Artifact = S["Artifact"];
export type JobDetail = S["JobDetail"];
export type JobStatus = S["JobStatusEnum"];
export type JobKind = S["JobKindEnum"];
export type HardwareProfile = S["HardwareProfile"];
export type ProfileReadiness = S["ProfileReadiness"];
export type Worker = S["Worker"];
export type Device = S["Device"];
export type Enrollment = S["Enrollment"];
export type Review = S["Review"];
export type Gate = S["Gate"];
export type Decision = S["Decision"];
export type ApprovalState = S["ApprovalState"];
export type TokenScope = S["ScopesEnum"];
export type Token = Omit<S["Token"], "scopes"> & { scopes: TokenScope[] };
export type TokenCreated = Omit<S["TokenCreated"], "scopes"> & { scopes: TokenScope[] };
export type AuditEvent = S["AuditEvent"];
export type Role = S["RoleEnum"];
export type TeamDetail = S["TeamDetail"];
export type Member = S["Member"];
export type Invitation = S["Invitation"];
export type InvitationCreated = S["InvitationCreated"];
export type InvitationPreview = S["InvitationPreview"];
export type Policy = S["Policy"];
export type PolicyKind = S["PolicyKindEnum"];
export type JobEstimate = S["JobEstimate"];
export type QueueDepth = S["QueueDepth"];
export type RunningStep = S["RunningStep"];

export interface Page<T> {
  next?: string | null;
  previous?: string | null;
  results: T[];
}

export const FRAMEWORKS: Record<Framework, string> = {
  onnx: "ONNX",
  pytorch: "PyTorch",
  tensorflow: "TensorFlow",
  keras: "Keras",
  sklearn: "scikit-learn",
  xgboost: "XGBoost",
  lightgbm: "LightGBM",
  tflite: "TFLite",
  caffe: "Caffe",
  mxnet: "MXNet",
  paddlepaddle: "PaddlePaddle",
};

export const VERSION_STATUSES: Record<VersionStatus, string> = {
  received: "Received",
  processing: "Processing",
  ready: "Ready for review",
  failed: "Failed",
  approved: "Approved",
  rejected: "Rejected",
  revoked: "Revoked",
};

export const ROLES: Record<Role, string> = {
  viewer: "Viewer",
  data_scientist: "Data scientist",
  approver: "Approver",
  admin: "Admin",
};
