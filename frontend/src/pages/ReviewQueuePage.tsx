import { Link, useNavigate, useParams } from "react-router";
import { get, getAll } from "../api/client";
import { useState } from "react";
import type { Decision, Review, VersionDetail, VersionSummary } from "../api/types";
import { canAnywhere, useSession } from "../auth/session";
import { Badge, Empty, ErrorMessage, Loading, Notice, PageHeader } from "../components/ui";
import { EvidenceSummary, type EvidenceSnapshot } from "../features/Evidence";
import { PreviousApprovedCard } from "../features/Recommendation";
import { ApprovalLine, DecisionForm, GatesList } from "../features/ReviewPanel";
import { formatDateTime, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";

function ReviewDetail({ id, onDecided }: { id: number; onDecided: (message: string) => void }) {
  const review = useResource(() => get<Review>(`versions/${id}/review/`), [id]);
  const version = useResource(() => get<VersionDetail>(`versions/${id}/`), [id]);
  if (review.error) return <ErrorMessage error={review.error} />;
  if (!review.data || !version.data) return <Loading label="Loading the evidence…" height={420} />;
  const r = review.data;
  const profiles = Object.keys(version.data.reports.recommend ?? {});
  const previous = version.data.previous_approved;
  return (
    <article className="review-detail" aria-labelledby="review-title">
      <header className="review-head">
        <h2 id="review-title">
          {r.version.model} v{r.version.number} <span className="muted">· {r.version.team}</span>
        </h2>
        <Link to={`/versions/${id}`} className="button button-small">
          Full version page
        </Link>
      </header>
      <p className="muted small">
        Uploaded by {version.data.created_by} {formatRelative(version.data.created_at)} · evidence{" "}
        <code>{r.evidence_sha256.slice(0, 12)}…</code>
      </p>
      <div className="side-by-side">
        <section aria-label="Evidence" className="panel">
          <h3 className="h3">Evidence</h3>
          <EvidenceSummary evidence={r.evidence as EvidenceSnapshot} />
          <h3 className="h3">Against the previous approved version</h3>
          {profiles.length ? (
            profiles.map((profile) => (
              <div key={profile}>
                {profiles.length > 1 ? <h4 className="h4">{profile}</h4> : null}
                <PreviousApprovedCard previous={previous} profile={profile} />
              </div>
            ))
          ) : (
            <p className="muted">No recommendation to compare.</p>
          )}
        </section>
        <section aria-label="Gates and decision" className="panel">
          <h3 className="h3">Gates</h3>
          <p>
            {r.gates.length ? (
              <Badge tone={r.gates_passed ? "ok" : "bad"}>
                {r.gates_passed ? "Every gate passes" : "A gate fails"}
              </Badge>
            ) : null}{" "}
            <ApprovalLine review={r} />
          </p>
          <GatesList review={r} />
          <h3 className="h3">Decision</h3>
          <DecisionForm
            review={r}
            onDecided={(d: Decision) =>
              onDecided(
                `${r.version.model} v${r.version.number} was ${d.kind === "approve" ? "approved" : d.kind === "reject" ? "rejected" : "revoked"}.`,
              )
            }
          />
        </section>
      </div>
    </article>
  );
}

export function ReviewQueuePage() {
  const { me } = useSession();
  const { id } = useParams();
  const navigate = useNavigate();
  const queue = useResource(
    () => getAll<VersionSummary>("versions/", { reviewable: "true", ordering: "status_changed_at" }),
    [],
  );
  const selected = id ? Number(id) : undefined;
  const [flash, setFlash] = useState<{ text: string; id: number }>();
  // A decided version leaves the list at once, before the reloaded queue arrives.
  const [decided, setDecided] = useState<number[]>([]);
  const items = (queue.data?.items ?? []).filter((v) => !decided.includes(v.id));

  return (
    <>
      <PageHeader
        title="Review queue"
        subtitle="Versions ready for your decision, oldest first. Decide on the evidence; a re-run after your decision makes it stop applying."
      />
      {!canAnywhere(me, "review") ? (
        <Notice kind="warn" title="You don't review versions">
          Approving and rejecting needs the approver or admin role in a team. Your versions' state is on the models
          page.
        </Notice>
      ) : null}
      {flash ? (
        <Notice kind="ok" title="Decision recorded">
          {flash.text} <Link to={`/versions/${flash.id}#review`}>Open the version</Link>.
        </Notice>
      ) : null}
      {queue.error ? (
        <ErrorMessage
          error={queue.error}
          action={
            <button className="button" onClick={queue.reload}>
              Retry
            </button>
          }
        />
      ) : !queue.data ? (
        <Loading height={300} />
      ) : (
        <div className="queue-layout">
          <div className="queue-list">
            {items.length === 0 ? (
              <Empty title="Nothing waits for your review.">
                Versions appear here when their pipeline has finished. Under the four-eyes rule, your own uploads go to
                another approver.
              </Empty>
            ) : (
              <ul className="queue" aria-label="Versions waiting for review">
                {items.map((v) => (
                  <li key={v.id}>
                    <Link
                      to={`/review/${v.id}`}
                      className={`queue-item${selected === v.id ? " active" : ""}`}
                      aria-current={selected === v.id ? "true" : undefined}
                    >
                      <span className="queue-title">
                        {v.model} v{v.number}
                      </span>
                      <span className="muted small">
                        {v.team} · by {v.created_by}
                      </span>
                      <span className="muted small" title={formatDateTime(v.status_changed_at)}>
                        ready {formatRelative(v.status_changed_at)}
                      </span>
                    </Link>
                  </li>
                ))}
              </ul>
            )}
          </div>
          <div className="queue-detail">
            {selected ? (
              <ReviewDetail
                key={selected}
                id={selected}
                onDecided={(text) => {
                  setFlash({ text, id: selected });
                  setDecided((ids) => [...ids, selected]);
                  queue.reload();
                  navigate("/review");
                }}
              />
            ) : items.length ? (
              <Empty title="Choose a version on the left to see its evidence." />
            ) : null}
          </div>
        </div>
      )}
    </>
  );
}
