import { useState } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router";
import { ApiError, del, get, getAll } from "../api/client";
import { FRAMEWORKS, type Model, type VersionSummary } from "../api/types";
import { can, useSession } from "../auth/session";
import { ConfirmButton, Empty, ErrorMessage, Loading, PageHeader, StatusBadge } from "../components/ui";
import { formatDateTime, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";

export function ModelPage() {
  const { slug = "" } = useParams();
  const [params] = useSearchParams();
  const team = params.get("team") ?? "";
  const { me } = useSession();
  const navigate = useNavigate();
  const [deleteError, setDeleteError] = useState<ApiError>();
  const model = useResource(() => get<Model>(`models/${encodeURIComponent(slug)}/`, { team }), [slug, team]);
  const versions = useResource(
    () => getAll<VersionSummary>(`models/${encodeURIComponent(slug)}/versions/`, { team }),
    [slug, team],
  );

  if (model.error) return <ErrorMessage error={model.error} title={`Model ${slug}`} />;
  if (!model.data) return <Loading height={300} />;
  const m = model.data;
  return (
    <>
      <PageHeader
        title={m.name}
        subtitle={
          <>
            {m.slug} · team {m.team} · registered by {m.created_by} on {formatDateTime(m.created_at)}
          </>
        }
        actions={
          can(me, m.team, "upload") ? (
            <Link
              className="button button-primary"
              to={`/upload?model=${encodeURIComponent(m.slug)}&team=${encodeURIComponent(m.team)}`}
            >
              Upload a new version
            </Link>
          ) : null
        }
      />
      {m.description ? <p>{m.description}</p> : null}
      {deleteError ? <ErrorMessage error={deleteError} title="The model was not deleted" /> : null}
      {versions.error ? (
        <ErrorMessage error={versions.error} />
      ) : !versions.data ? (
        <Loading />
      ) : versions.data.items.length === 0 ? (
        <>
          <Empty title="This model has no versions yet." />
          {can(me, m.team, "upload") ? (
            <p>
              {/* Only an empty model: a version, its reports and decisions are evidence, and stay. */}
              <ConfirmButton
                className="button button-quiet"
                confirmLabel={`Delete the model ${m.slug}`}
                onConfirm={async () => {
                  setDeleteError(undefined);
                  try {
                    await del(`models/${encodeURIComponent(m.slug)}/?team=${encodeURIComponent(m.team)}`);
                    navigate("/models", { replace: true });
                  } catch (err) {
                    setDeleteError(err instanceof ApiError ? err : undefined);
                    versions.reload();
                  }
                }}
              >
                Delete this empty model
              </ConfirmButton>
            </p>
          ) : null}
        </>
      ) : (
        <div className="table-scroll" tabIndex={0}>
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">State</th>
                <th scope="col">Framework</th>
                <th scope="col">Uploaded by</th>
                <th scope="col">Uploaded</th>
                <th scope="col">Notes</th>
              </tr>
            </thead>
            <tbody>
              {versions.data.items.map((v) => (
                <tr key={v.id}>
                  <th scope="row">
                    <Link to={`/versions/${v.id}`} className="strong-link">
                      v{v.number}
                    </Link>
                  </th>
                  <td>
                    <StatusBadge status={v.status ?? "received"} />
                    {v.status === "failed" && v.status_reason ? (
                      <div className="muted small">{v.status_reason}</div>
                    ) : null}
                  </td>
                  <td>{FRAMEWORKS[v.framework] ?? v.framework}</td>
                  <td>{v.created_by}</td>
                  <td title={formatDateTime(v.created_at)}>{formatRelative(v.created_at)}</td>
                  <td className="clip">{v.notes}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
