import { useEffect, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { ApiError, apiUrl, get, post } from "../api/client";
import { listDeployments, listTargets, rows, type Deployment, type ServingTarget } from "../api/deployments";
import { reportProfiles } from "../api/reports";
import { FRAMEWORKS, type Decision, type Review, type VersionDetail } from "../api/types";
import { can, useSession } from "../auth/session";
import {
  Badge,
  ConfirmDialog,
  Empty,
  ErrorMessage,
  Loading,
  Notice,
  PageHeader,
  Section,
  StatusBadge,
} from "../components/ui";
import { Benchmarks } from "../features/Benchmarks";
import { DeployForm, DeploymentsTable, hasInProgress } from "../features/Deployments";
import { GraphView } from "../features/GraphView";
import { InspectionSummary } from "../features/Inspection";
import { OpSupportMatrix } from "../features/OpSupportMatrix";
import { ParityTable } from "../features/Parity";
import { PipelineView } from "../features/PipelineView";
import { Playground } from "../features/Playground";
import { CompareWith } from "../features/Compare";
import { PreviousApprovedCard, RecommendationCard } from "../features/Recommendation";
import { ApprovalLine, DecisionForm, GatesList } from "../features/ReviewPanel";
import { VariantsTable } from "../features/Variants";
import { formatDateTime, formatRelative } from "../lib/format";
import { usePolled, useResource } from "../lib/hooks";
import { isRunning } from "./UploadPage";

const SECTIONS: [string, string][] = [
  ["pipeline", "Pipeline"],
  ["inspection", "Inspection"],
  ["graph", "Graph"],
  ["try", "Try it"],
  ["matrix", "Op support"],
  ["variants", "Variants"],
  ["benchmarks", "Benchmarks"],
  ["parity", "Parity"],
  ["recommendation", "Recommendation"],
  ["review", "Review"],
  ["deployments", "Deployments"],
];

/** The graph is loaded only when someone opens it: it can run to thousands of nodes. */
function GraphDisclosure({ versionId }: { versionId: number }) {
  const [open, setOpen] = useState(false);
  return (
    <details className="graph-disclosure" onToggle={(event) => setOpen(event.currentTarget.open)}>
      <summary>Show the graph</summary>
      {open ? <GraphView versionId={versionId} /> : null}
    </details>
  );
}

function DecisionHistory({ decisions }: { decisions: Decision[] }) {
  if (!decisions.length) return <p className="muted">No decisions yet.</p>;
  return (
    <ol className="history">
      {decisions.map((d) => (
        <li key={d.id}>
          <Badge tone={d.kind === "approve" ? "ok" : d.kind === "reject" ? "bad" : "warn"}>
            {d.kind === "approve" ? "Approved" : d.kind === "reject" ? "Rejected" : "Revoked"}
          </Badge>{" "}
          by <strong>{d.actor}</strong>{" "}
          <span className="muted small" title={formatDateTime(d.created_at)}>
            {formatRelative(d.created_at)}
          </span>
          {d.comment ? <blockquote>{d.comment}</blockquote> : null}
          {d.override_reason ? <p className="small">Override: {d.override_reason}</p> : null}
          {d.single_reviewer ? (
            <p className="small text-warn">
              Single reviewer: {d.actor} uploaded this version and approved it, as the team's single-reviewer mode
              (four-eyes off) allows.
            </p>
          ) : null}
          {!d.gates_passed && d.kind === "approve" ? (
            <p className="small text-warn">Approved while a gate failed.</p>
          ) : null}
        </li>
      ))}
    </ol>
  );
}

function VersionDeployments({ version }: { version: VersionDetail }) {
  const { me } = useSession();
  const [nonce, setNonce] = useState(0);
  const deployments = useResource(
    async () => rows(await listDeployments({ version: version.id })),
    [version.id, nonce],
  );
  const targets = useResource(async () => rows(await listTargets({ team: version.team })), [version.team]);
  useEffect(() => {
    if (!hasInProgress(deployments.data)) return;
    const timer = setTimeout(() => setNonce((n) => n + 1), 2000);
    return () => clearTimeout(timer);
  }, [deployments.data]);
  if (deployments.error?.status === 404) {
    return <Notice title="Deployments are not available on this server yet">{deployments.error.message}</Notice>;
  }
  if (deployments.error) return <ErrorMessage error={deployments.error} />;
  if (!deployments.data) return <Loading height={80} />;
  const optimizeVariants = Object.values(version.reports.optimize ?? {}).flatMap((o) => o.variants.map((v) => v.name));
  const recommended = Object.values(version.reports.recommend ?? {})[0]?.winner?.name;
  const mayDeploy = can(me, version.team, "deploy");
  const approved = version.status === "approved" && version.approval.current;
  return (
    <>
      <DeploymentsTable deployments={deployments.data} onChanged={() => setNonce((n) => n + 1)} showVersion={false} />
      {mayDeploy ? (
        approved ? (
          targets.error ? (
            <ErrorMessage error={targets.error} />
          ) : !targets.data ? (
            <Loading height={60} />
          ) : (
            <>
              <h3 className="h3">Deploy this version</h3>
              <DeployForm
                chooseVersion={false}
                versions={[
                  {
                    id: version.id,
                    label: `${version.model} v${version.number}`,
                    variants: [...new Set(optimizeVariants)],
                    recommended,
                  },
                ]}
                targets={targets.data.filter((t: ServingTarget) => t.enabled)}
                onDeployed={(d: Deployment) => {
                  deployments.setData([d, ...(deployments.data ?? [])]);
                  setNonce((n) => n + 1);
                }}
              />
            </>
          )
        ) : (
          <p className="muted">Only an approved version whose evidence is unchanged can be deployed.</p>
        )
      ) : null}
    </>
  );
}

/** What a re-run does (apps/approvals/services.py `rerun`): the version goes to processing at
 * once, so an approval stops applying whatever the new evidence turns out to be. */
function RerunDialog({
  version: v,
  onConfirm,
  onClose,
}: {
  version: VersionDetail;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const hasReports = Object.keys(v.reports ?? {}).length > 0;
  return (
    <ConfirmDialog
      title={`Run the pipeline of ${v.model} v${v.number} again?`}
      confirmLabel="Run the pipeline again"
      busyLabel="Starting…"
      tone="primary"
      onConfirm={onConfirm}
      onClose={onClose}
    >
      <p>
        A new pipeline run starts now: every step runs again, for each of the version's hardware profiles. The version
        is processing until the run finishes, then ready for review again (or failed, if no profile gets measured
        numbers).
      </p>
      <p>
        This page then shows the new run, whose reports replace the current ones as its steps finish. The current run
        stays on the server, and each decision in the history keeps the gate results and evidence hash it was made on
        {hasReports ? (
          <>
            {" "}
            (<a href={apiUrl(`versions/${v.id}/report/`)}>download the current reports</a> to keep a copy at hand)
          </>
        ) : null}
        .
      </p>
      {v.status === "approved" ? (
        <p>
          <strong>v{v.number} is approved now; that approval stops applying as soon as the run starts.</strong> The
          version can't be deployed while it runs, and afterwards it needs a new review, even if the new evidence turns
          out the same. Deployments of it that are live now stay live.
        </p>
      ) : v.status === "ready" ? (
        <p>A reviewer deciding on the current evidence has to wait for the new run.</p>
      ) : v.status === "rejected" || v.status === "revoked" ? (
        <p>The earlier decision stays in the history; the new run is reviewed afresh.</p>
      ) : null}
    </ConfirmDialog>
  );
}

const UNREVIEWABLE = new Set(["received", "processing", "failed"]);

export function VersionPage() {
  const { id = "" } = useParams();
  const versionId = Number(id);
  const { me } = useSession();
  const [params, setParams] = useSearchParams();
  const version = usePolled<VersionDetail>(`/api/v1/versions/${versionId}/`, 1500, isRunning);
  const status = version.data?.status;
  // Evidence exists once the pipeline has finished: asking earlier only gets a 409.
  const reviewable = status !== undefined && !UNREVIEWABLE.has(status);
  const review = useResource(
    () => (reviewable ? get<Review>(`versions/${versionId}/review/`) : Promise.resolve(undefined)),
    [versionId, status],
  );
  const decisions = useResource(() => get<Decision[]>(`versions/${versionId}/decisions/`), [versionId, status]);
  const [rerunError, setRerunError] = useState<ApiError>();
  const [askRerun, setAskRerun] = useState(false);

  if (!Number.isInteger(versionId) || versionId <= 0)
    return <ErrorMessage error={`"${id}" is not a version number.`} />;
  if (version.error && !version.data) {
    return (
      <ErrorMessage
        error={version.error}
        title={`Version ${id}`}
        action={<Link to="/models">Back to the models</Link>}
      />
    );
  }
  if (!version.data) return <Loading label="Loading the version…" height={600} />;
  const v = version.data;
  const profiles = reportProfiles(v.reports);
  const profile =
    params.get("profile") && profiles.includes(params.get("profile") as string)
      ? (params.get("profile") as string)
      : (profiles[0] ?? "");
  const validate = v.reports.validate?.[profile];
  const recommend = v.reports.recommend?.[profile];
  const running = isRunning(v);
  // What to say where a step has no report: still to come, or never ran because one failed.
  const missing = (kind: string, what: string) => {
    const job = v.latest_run?.jobs.find(
      (j) => j.kind === kind && (j.profile === profile || j.profile === null || !profile),
    );
    if (job?.status === "failed") return <Empty title={`${what} failed.`}>{job.error}</Empty>;
    if (job?.status === "cancelled" || (!running && !job))
      return <Empty title={`${what} did not run: the pipeline stopped before it.`} />;
    return (
      <Empty title={`${what} has not finished yet.`}>This section fills in by itself when the step is done.</Empty>
    );
  };

  return (
    <>
      <PageHeader
        title={
          <>
            <Link to={`/models/${v.model}?team=${v.team}`} className="title-link">
              {v.model}
            </Link>{" "}
            v{v.number} <StatusBadge status={v.status ?? "received"} />
          </>
        }
        subtitle={
          <>
            Team {v.team} · {FRAMEWORKS[v.framework] ?? v.framework} · uploaded by {v.created_by}{" "}
            {formatRelative(v.created_at)}
            {v.source_artifact
              ? ` · ${v.source_artifact.original_filename || "source"} (sha256 ${v.source_artifact.sha256.slice(0, 12)}…)`
              : ""}
          </>
        }
        actions={
          can(me, v.team, "upload") && !running ? (
            v.rerun_blocked ? (
              <Link
                className="button"
                to={`/upload?model=${encodeURIComponent(v.model)}&team=${encodeURIComponent(v.team)}`}
              >
                Upload a new version
              </Link>
            ) : (
              <button type="button" className="button" onClick={() => setAskRerun(true)}>
                Run the pipeline again
              </button>
            )
          ) : null
        }
      />
      {askRerun ? (
        <RerunDialog
          version={v}
          onConfirm={async () => {
            setRerunError(undefined);
            try {
              await post(`versions/${v.id}/rerun/`);
              version.reload();
            } catch (err) {
              setRerunError(err instanceof ApiError ? err : undefined);
            }
          }}
          onClose={() => setAskRerun(false)}
        />
      ) : null}
      {rerunError ? <ErrorMessage error={rerunError} /> : null}
      {v.status === "failed" ? (
        <ErrorMessage error={v.status_reason || "A pipeline step failed."} title="The pipeline failed" />
      ) : null}
      {v.rerun_blocked ? <Notice title="A new upload, not a re-run">{v.rerun_blocked}</Notice> : null}
      {v.notes ? <p className="notes-text">{v.notes}</p> : null}
      <nav className="section-nav" aria-label="Sections of this page">
        {SECTIONS.map(([anchor, label]) => (
          <a key={anchor} href={`#${anchor}`}>
            {label}
          </a>
        ))}
        {profiles.length > 1 ? (
          <label className="profile-pick">
            Profile{" "}
            <select
              className="input input-small"
              value={profile}
              onChange={(e) => {
                const next = new URLSearchParams(params);
                next.set("profile", e.target.value);
                setParams(next, { replace: true });
              }}
            >
              {profiles.map((p) => (
                <option key={p}>{p}</option>
              ))}
            </select>
          </label>
        ) : profile ? (
          <span className="muted small">Profile: {profile}</span>
        ) : null}
      </nav>

      <Section id="pipeline" title="Pipeline">
        {version.error ? <ErrorMessage error={version.error} title="Live updates paused" /> : null}
        <PipelineView
          run={v.latest_run}
          checkedAt={version.checkedAt}
          readiness={v.profile_readiness}
          onDropProfile={
            can(me, v.team, "upload")
              ? async (profile) => {
                  setRerunError(undefined);
                  try {
                    await post(`versions/${v.id}/profiles/${profile}/drop/`, {
                      comment: "nothing serves this profile",
                    });
                    version.reload();
                  } catch (err) {
                    setRerunError(err instanceof ApiError ? err : undefined);
                  }
                }
              : undefined
          }
        />
      </Section>

      <Section id="inspection" title="Inspection">
        {v.reports.inspect ? <InspectionSummary report={v.reports.inspect} /> : missing("inspect", "Inspection")}
      </Section>

      <Section
        id="graph"
        title="Graph"
        description="The model's graph as inspection read it, coloured by whether a backend runs each node."
      >
        <GraphDisclosure versionId={v.id} />
      </Section>

      <Section
        id="try"
        title="Try it"
        description="Run the original and its variants on your own input, in a worker's sandbox, and compare what comes out."
      >
        <Playground
          versionId={v.id}
          inspected={Boolean(v.reports.inspect)}
          variants={[...new Set(v.artifacts.filter((a) => a.kind === "variant").map((a) => a.name))].sort()}
          canRun={can(me, v.team, "upload") || can(me, v.team, "review")}
        />
      </Section>

      <Section
        id="matrix"
        title="Op support"
        description="Which runtime runs each operator type of the model, as the runtime itself answered. Hover or focus a cell for the reason."
      >
        {validate ? (
          <OpSupportMatrix matrix={validate.matrix} reports={validate.reports} />
        ) : (
          missing("validate", "The op-support check")
        )}
      </Section>

      <Section id="variants" title="Variants">
        {v.reports.optimize?.[profile] ? (
          <VariantsTable
            optimize={v.reports.optimize[profile]}
            parity={v.reports.parity?.[profile]}
            benchmark={v.reports.benchmark?.[profile]}
            recommend={recommend}
            artifacts={v.artifacts}
            profile={profile}
          />
        ) : (
          missing("optimize", "Optimization")
        )}
      </Section>

      <Section id="benchmarks" title="Benchmarks">
        {v.reports.benchmark?.[profile] ? (
          <Benchmarks report={v.reports.benchmark[profile]} recommended={recommend?.winner?.name} />
        ) : (
          missing("benchmark", "The benchmark")
        )}
      </Section>

      <Section
        id="parity"
        title="Accuracy parity"
        description="Every variant against the FP32 original on the same inputs."
      >
        {v.reports.parity?.[profile] ? (
          <ParityTable report={v.reports.parity[profile]} />
        ) : (
          missing("parity", "The accuracy check")
        )}
      </Section>

      <Section id="recommendation" title="Recommendation">
        {recommend ? <RecommendationCard report={recommend} /> : missing("recommend", "The recommendation")}
        <h3 className="h3">Compared with the previous approved version</h3>
        {recommend ? (
          <PreviousApprovedCard previous={v.previous_approved} profile={profile} />
        ) : (
          <p className="muted">Available once the recommendation is made.</p>
        )}
        <h3 className="h3">Compare with…</h3>
        <CompareWith version={v} profiles={profiles} profile={profile} />
      </Section>

      <Section id="review" title="Review">
        {!reviewable ? (
          <Notice title="Not ready for review">
            {v.status === "failed"
              ? "Its pipeline failed, so there is no evidence to review; fix the cause and run the pipeline again."
              : "Its pipeline is still running; the evidence, the gates and the decision appear here when it finishes."}
          </Notice>
        ) : review.error?.status === 409 ? (
          <Notice title="Not ready for review">{review.error.message}</Notice>
        ) : review.error ? (
          <ErrorMessage error={review.error} />
        ) : !review.data ? (
          <Loading height={160} />
        ) : (
          <div className="grid-2">
            <div>
              <h3 className="h3">Gates</h3>
              <p>
                {review.data.gates.length ? (
                  <Badge tone={review.data.gates_passed ? "ok" : "bad"}>
                    {review.data.gates_passed ? "Every gate passes" : "A gate fails"}
                  </Badge>
                ) : null}{" "}
                <ApprovalLine review={review.data} />
              </p>
              <GatesList review={review.data} />
              <h3 className="h3">History</h3>
              {decisions.data ? (
                <DecisionHistory decisions={decisions.data} />
              ) : decisions.error ? (
                <ErrorMessage error={decisions.error} />
              ) : (
                <Loading height={40} />
              )}
            </div>
            <div>
              <h3 className="h3">Decision</h3>
              <DecisionForm
                review={review.data}
                onDecided={() => {
                  version.reload();
                  review.reload();
                  decisions.reload();
                }}
              />
            </div>
          </div>
        )}
      </Section>

      <Section id="deployments" title="Deployments">
        <VersionDeployments version={v} />
      </Section>
    </>
  );
}
