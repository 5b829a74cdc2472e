// Serving targets and deployments (apps/deployments): the generated types, and the calls.
import { del, get, patch, post, type RequestOptions } from "./client";
import type { components } from "./schema";
import type { Page } from "./types";

type S = components["schemas"];

export type Deployment = S["Deployment"];
export type DeploymentStatus = S["DeploymentStatusEnum"];
export type ServingTarget = S["Target"];
export type TargetInput = Partial<S["TargetCreateInputRequest"]> &
  Pick<S["TargetCreateInputRequest"], "name" | "profile">;
export type DeployInput = S["DeployInputRequest"];
/** A kind of serving target and what it takes (GET /targets/kinds/), from its driver's specs. */
export type TargetKind = S["TargetKind"];
export type OptionSpec = S["OptionSpec"];
export type OptionType = S["TypeEnum"];
/** What a deployment's target reports about it (GET /deployments/{id}/metrics/). */
export type DeploymentMetrics = S["DeploymentMetrics"];
export type MetricsInterval = S["MetricsInterval"];
export type TargetHealthNow = S["DeploymentTargetHealth"];

export const DEPLOYMENT_STATUSES: Record<DeploymentStatus, string> = {
  pending: "Pending",
  pushing: "Pushing",
  live: "Live",
  failed: "Failed",
  undeploying: "Undeploying",
  rolled_back: "Rolled back",
  retired: "Retired",
};

export const IN_PROGRESS: DeploymentStatus[] = ["pending", "pushing", "undeploying"];

export const listTargets = (query?: RequestOptions["query"]) =>
  get<Page<ServingTarget>>("targets/", { page_size: 500, ...query });
export const listTargetKinds = (signal?: AbortSignal) => get<TargetKind[]>("targets/kinds/", undefined, signal);
export const createTarget = (input: TargetInput) => post<ServingTarget>("targets/", input);
export const updateTarget = (id: number, input: S["PatchedTargetUpdateInputRequest"]) =>
  patch<ServingTarget>(`targets/${id}/`, input);
export const deleteTarget = (id: number) => del(`targets/${id}/`);
export const checkTarget = (id: number) => post<ServingTarget>(`targets/${id}/check/`);

export const listDeployments = (query?: RequestOptions["query"]) =>
  get<Page<Deployment>>("deployments/", { page_size: 500, ...query });
export const deploy = (input: DeployInput) => post<Deployment>("deployments/", input);
export const rollback = (id: number) => post<Deployment>(`deployments/${id}/rollback/`);
export const undeploy = (id: number) => post<Deployment>(`deployments/${id}/undeploy/`);
export const deploymentMetrics = (id: number, signal?: AbortSignal) =>
  get<DeploymentMetrics>(`deployments/${id}/metrics/`, undefined, signal);

export function rows<T>(answer: Page<T> | T[]): T[] {
  return Array.isArray(answer) ? answer : answer.results;
}
