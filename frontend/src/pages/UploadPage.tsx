import { useState } from "react";
import { Link, useSearchParams } from "react-router";
import { get, getAll } from "../api/client";
import { uploadVersion } from "../api/upload";
import type { HardwareProfile, Model, VersionDetail } from "../api/types";
import { teamsWhere, useSession } from "../auth/session";
import { ErrorMessage, Loading, Notice, PageHeader, Section, StatusBadge } from "../components/ui";
import { PipelineView } from "../features/PipelineView";
import { UploadForm } from "../features/UploadForm";
import { usePolled, useResource } from "../lib/hooks";

const FINAL = new Set(["ready", "failed", "approved", "rejected", "revoked"]);

export function isRunning(version: VersionDetail | undefined): boolean {
  return !version || !FINAL.has(version.status ?? "received");
}

function newKey(): string {
  return typeof crypto !== "undefined" && "randomUUID" in crypto
    ? crypto.randomUUID()
    : `${Date.now()}-${Math.random()}`;
}

function LivePipeline({ id }: { id: number }) {
  const version = usePolled<VersionDetail>(`/api/v1/versions/${id}/`, 1500, isRunning);
  if (version.error && !version.data) return <ErrorMessage error={version.error} />;
  if (!version.data) return <Loading label="Starting the pipeline…" height={360} />;
  const v = version.data;
  return (
    <Section
      id="pipeline"
      title={`${v.model} v${v.number}: pipeline`}
      actions={
        <Link className="button" to={`/versions/${v.id}`}>
          Open the version page
        </Link>
      }
    >
      <p>
        <StatusBadge status={v.status ?? "received"} /> <span className="muted">{v.status_reason}</span>
      </p>
      {version.error ? <ErrorMessage error={version.error} title="Live updates paused" /> : null}
      <PipelineView run={v.latest_run} checkedAt={version.checkedAt} readiness={v.profile_readiness} />
      {v.status === "ready" ? (
        <Notice kind="ok" title="The pipeline finished">
          Every step succeeded.{" "}
          <Link to={`/versions/${v.id}`}>See the support matrix, benchmarks and recommendation</Link>, then ask an
          approver to review it.
        </Notice>
      ) : v.status === "failed" ? (
        <Notice kind="warn" title="The pipeline stopped">
          {v.status_reason || "A step failed."} Fix the model (or its options) and upload it again as a new version.
        </Notice>
      ) : null}
    </Section>
  );
}

export function UploadPage() {
  const { me } = useSession();
  const [params] = useSearchParams();
  const [uploaded, setUploaded] = useState<VersionDetail>();
  const teams = teamsWhere(me, "upload");
  const profiles = useResource(() => get<HardwareProfile[]>("profiles/"), []);
  const models = useResource(() => getAll<Model>("models/"), []);

  return (
    <>
      <PageHeader
        title="Upload a model"
        subtitle="The file is checked, converted to ONNX if needed, then inspected, validated, optimized, benchmarked and compared for accuracy."
      />
      {teams.length === 0 ? (
        <Notice kind="warn" title="You can't upload">
          Uploading needs the data scientist or admin role in a team; yours are{" "}
          {me?.teams.map((t) => `${t.role.replace("_", " ")} in ${t.slug}`).join(", ") || "none"}. Ask a team admin.
        </Notice>
      ) : uploaded ? (
        <>
          <LivePipeline id={uploaded.id} />
          <button type="button" className="button" onClick={() => setUploaded(undefined)}>
            Upload another model
          </button>
        </>
      ) : profiles.error ? (
        <ErrorMessage error={profiles.error} />
      ) : !profiles.data ? (
        <Loading height={400} />
      ) : (
        <Section id="upload" title="The model">
          <UploadForm
            teams={teams}
            profiles={profiles.data}
            models={(models.data?.items ?? [])
              .filter((m) => teams.some((t) => t.slug === m.team))
              .map((m) => ({ slug: m.slug, team: m.team }))}
            initial={{ model: params.get("model") ?? "", team: params.get("team") ?? "" }}
            upload={(model, form, onProgress) => uploadVersion(model, form, onProgress, newKey())}
            onUploaded={setUploaded}
          />
        </Section>
      )}
    </>
  );
}
