import { useNavigate, useSearchParams } from "react-router";
import { get, getAll } from "../api/client";
import { uploadVersion } from "../api/upload";
import type { HardwareProfile, Model, VersionDetail } from "../api/types";
import { teamsWhere, useSession } from "../auth/session";
import { ErrorMessage, Loading, Notice, PageHeader, Section } from "../components/ui";
import { UploadForm } from "../features/UploadForm";
import { useResource } from "../lib/hooks";

const FINAL = new Set(["ready", "failed", "approved", "rejected", "revoked"]);

export function isRunning(version: VersionDetail | undefined): boolean {
  return !version || !FINAL.has(version.status ?? "received");
}

function newKey(): string {
  return typeof crypto !== "undefined" && "randomUUID" in crypto
    ? crypto.randomUUID()
    : `${Date.now()}-${Math.random()}`;
}

export function UploadPage() {
  const { me } = useSession();
  const [params] = useSearchParams();
  const navigate = useNavigate();
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
            // The live pipeline is the version page's: at its own URL it survives a reload, and
            // Back returns to where the upload started rather than to an emptied form.
            onUploaded={(version: VersionDetail) => navigate(`/versions/${version.id}`, { replace: true })}
          />
        </Section>
      )}
    </>
  );
}
