// The pipeline's steps as they run: status, progress, what the worker says it is doing, the
// error in the step's own words, and the log on request. Rows have a fixed layout so
// progress updates never move the page.
import { useState } from "react";
import type { Job, PipelineRun } from "../api/types";
import type { JobDetail, ProfileReadiness } from "../api/types";
import { ErrorMessage, Loading, ProgressBar, StatusBadge } from "../components/ui";
import { formatDuration, formatRelative } from "../lib/format";
import { usePolled, useNow } from "../lib/hooks";

export const STEP_LABELS: Record<string, string> = {
  import: "Import to ONNX",
  inspect: "Inspect",
  validate: "Validate op support",
  optimize: "Optimize",
  parity: "Accuracy parity",
  benchmark: "Benchmark",
  recommend: "Recommend",
  deploy: "Deploy",
};

const ACTIVE = new Set(["queued", "running"]);

const SUFFIXES: Record<number, string> = { 1: "st", 2: "nd", 3: "rd" };

/** "next", "2nd", "3rd", "11th", "21st": a place in line. */
export function ordinal(position: number): string {
  if (position === 1) return "next";
  const tens = position % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : (SUFFIXES[position % 10] ?? "th");
  return `${position}${suffix}`;
}

/** A rough span: "40 s", "2 min", "1 h 5 min". */
export function formatAbout(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  const minutes = Math.round((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${minutes ? ` ${minutes} min` : ""}`;
}

/** Where a queued step stands, as the server estimated it: its place on its queue and when it
 *  likely starts, with what that comes from, or why there is no estimate. */
export function waitingLine(job: Job): string {
  if (job.queue_position === null || job.queue_position === undefined) {
    return `queued on ${job.queue}, waiting for a worker`; // a server that sends no place
  }
  const place = `${ordinal(job.queue_position)} in line on queue ${job.queue}`;
  const estimate = job.estimate;
  if (!estimate) return place;
  if (estimate.starts_in_seconds === null) return `${place}. ${estimate.basis}`;
  if (estimate.starts_in_seconds === 0) return `${place}; any moment now: ${estimate.basis}`;
  return `${place}; about ${formatAbout(estimate.starts_in_seconds)} from now, ${estimate.basis}`;
}

/** How long a running step's kind usually takes on its queue, when recent steps say. */
function typicalLine(job: Job): string {
  const estimate = job.estimate;
  if (!estimate || estimate.typical_seconds === null) return "";
  return ` · usually about ${formatAbout(estimate.typical_seconds)}, ${estimate.basis}`;
}

function JobLog({ job }: { job: Job }) {
  const running = ACTIVE.has(job.status);
  const detail = usePolled<JobDetail>(`/api/v1/jobs/${job.id}/`, 2000, () => running);
  if (detail.error) return <ErrorMessage error={detail.error} />;
  if (!detail.data) return <Loading label="Loading the log…" height={80} />;
  return (
    <pre className="log" tabIndex={0} aria-label={`Log of ${STEP_LABELS[job.kind] ?? job.kind}`}>
      {detail.data.log || "(This step has written nothing to its log yet.)"}
    </pre>
  );
}

function StepRow({ job, now }: { job: Job; now: number }) {
  const [open, setOpen] = useState(false);
  const label = `${STEP_LABELS[job.kind] ?? job.kind}${job.profile ? ` · ${job.profile}` : ""}`;
  const running = job.status === "running";
  const message =
    job.status === "running"
      ? `${job.progress_message || "working"}${typicalLine(job)}`
      : job.status === "queued"
        ? waitingLine(job)
        : job.status === "pending"
          ? "waits for the steps before it"
          : job.status === "succeeded"
            ? `done${job.worker_host ? ` on ${job.worker_host}` : ""}`
            : job.status === "cancelled"
              ? // The server says which step stopped it: a failed profile step stops only its profile.
                job.error || "not run: an earlier step failed"
              : "";
  return (
    <li className={`step step-${job.status}`}>
      <div className="step-main">
        <span className="step-name">{label}</span>
        <StatusBadge status={job.status} />
        <span className="step-progress">
          <ProgressBar value={job.status === "succeeded" ? 1 : job.progress} label={`${label} progress`} />
        </span>
        <span className="step-time muted small">
          {job.started_at ? formatDuration(job.started_at, job.finished_at, now) : ""}
          {job.attempt > 1 ? ` · attempt ${job.attempt} of ${job.max_attempts}` : ""}
        </span>
        <button
          type="button"
          className="button button-quiet button-small"
          aria-expanded={open}
          onClick={() => setOpen((v) => !v)}
        >
          {open ? "Hide log" : "Log"}
        </button>
      </div>
      <div className="step-message muted small">
        {message}
        {running && job.heartbeat_at ? ` · heartbeat ${formatRelative(job.heartbeat_at, now)}` : ""}
      </div>
      {job.worker_note ? (
        <div className="step-message small text-warn" role="status">
          {job.worker_note}
        </div>
      ) : null}
      {job.status === "failed" && job.error ? (
        <div className="step-error" role="alert">
          <strong>{label} failed:</strong> {job.error}
          {job.error_code ? <span className="muted small"> ({job.error_code})</span> : null}
        </div>
      ) : null}
      {open ? <JobLog job={job} /> : null}
    </li>
  );
}

export function PipelineView({
  run,
  checkedAt,
  readiness,
  onDropProfile,
}: {
  run: PipelineRun | null | undefined;
  checkedAt?: number | undefined;
  /** The version's profile readiness: a profile nothing serves says so above the steps. */
  readiness?: readonly ProfileReadiness[] | undefined;
  /** Offered beside a profile nothing serves: stop waiting for it (the caller asks the server). */
  onDropProfile?: ((profile: string) => void) | undefined;
}) {
  const now = useNow(1000);
  if (!run) return <p className="muted">No pipeline has run for this version yet.</p>;
  const jobs = [...run.jobs].sort((a, b) => a.sequence - b.sequence);
  const done = jobs.filter((j) => j.status === "succeeded").length;
  const live = jobs.some((j) => ACTIVE.has(j.status) || j.status === "pending") && run.status !== "failed";
  return (
    <div className="pipeline">
      <p className="pipeline-summary">
        <StatusBadge status={run.status} /> {done} of {jobs.length} steps done
        <span className="muted small" aria-live="off">
          {live && checkedAt ? ` · live, checked ${formatRelative(new Date(checkedAt).toISOString(), now)}` : ""}
          {!live && run.finished_at ? ` · finished ${formatRelative(run.finished_at, now)}` : ""}
        </span>
      </p>
      {(readiness ?? [])
        .filter((r) => r.status === "processing" && r.service_note)
        .map((r) => (
          <p key={r.profile} className="step-message text-warn" role="status">
            <strong>{r.profile}:</strong> {r.service_note}
            {onDropProfile ? (
              <>
                {" "}
                <button
                  type="button"
                  className="button button-quiet button-small"
                  onClick={() => onDropProfile(r.profile)}
                >
                  Stop waiting for {r.profile}
                </button>
              </>
            ) : null}
          </p>
        ))}
      {(readiness ?? [])
        .filter((r) => r.hardware_note)
        .map((r) => (
          <p key={`${r.profile}-hardware`} className="step-error" role="alert">
            <strong>{r.profile}, measured on other hardware:</strong> {r.hardware_note}
          </p>
        ))}
      <ol className="steps">
        {jobs.map((job) => (
          <StepRow key={job.id} job={job} now={now} />
        ))}
      </ol>
    </div>
  );
}
