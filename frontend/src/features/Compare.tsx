// Two versions of a model, or two variants, side by side on one hardware profile, as the API
// computes them when asked (GET /api/v1/compare/, apps/registry/compare.py): every latency with
// its 95% interval, and a verdict only where the intervals say a change is beyond the noise.
import { useId, useState, type ReactNode } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { get, getAll } from "../api/client";
import type { components } from "../api/schema";
import type { VersionDetail, VersionSummary } from "../api/types";
import { Badge, ErrorMessage, Loading, Notice, PageHeader, Section } from "../components/ui";
import { formatBytes } from "../lib/format";
import { useResource } from "../lib/hooks";

type S = components["schemas"];
export type Comparison = S["Comparison"];
export type ComparisonSide = S["Side"];
export type Figure = S["Figure"];
export type Change = S["Change"];

const STATISTICS: [string, string][] = [
  ["p50_ms", "p50 latency"],
  ["p99_ms", "p99 latency"],
  ["cpu_ms", "CPU time per inference"],
];
const METRICS: [keyof S["OutputAccuracy"], string, number][] = [
  ["cosine", "cosine", 6],
  ["top1_agreement", "top-1 agreement", 4],
  ["max_abs_error", "max abs error", 4],
];
const GOOD = new Set(["faster", "higher", "closer", "smaller"]);
const BAD = new Set(["slower", "lower", "further"]);

/** Decimals that show `value` to three significant digits and keep an interval's two ends apart. */
function decimals(value: number, low?: number | null, high?: number | null): number {
  const significant = value === 0 ? 0 : 2 - Math.floor(Math.log10(Math.abs(value)));
  const width = low !== null && low !== undefined && high !== null && high !== undefined ? high - low : 0;
  // Two significant digits of the interval's width: its ends, and the value inside, stay apart.
  const apart = width > 0 ? 1 - Math.floor(Math.log10(width)) : 0;
  return Math.min(6, Math.max(0, significant, apart));
}

/** A latency in ms (µs under 0.01 ms), and its 95% interval in the same unit and precision. */
export function latencyParts(
  value: number,
  low?: number | null,
  high?: number | null,
): { value: string; interval: string | null } {
  const micro = Math.abs(value) < 0.01;
  const scale = micro ? 1000 : 1;
  const unit = micro ? "µs" : "ms";
  const hasInterval = low !== null && low !== undefined && high !== null && high !== undefined;
  const d = hasInterval ? decimals(value * scale, low * scale, high * scale) : decimals(value * scale);
  return {
    value: `${(value * scale).toFixed(d)} ${unit}`,
    interval: hasInterval ? `${(low * scale).toFixed(d)}–${(high * scale).toFixed(d)} ${unit}` : null,
  };
}

/** Inferences per second and the 95% interval, as precise as the interval is narrow. */
export function rateParts(
  value: number,
  low?: number | null,
  high?: number | null,
): { value: string; interval: string | null } {
  const hasInterval = low !== null && low !== undefined && high !== null && high !== undefined;
  const d = hasInterval ? decimals(value, low, high) : decimals(value);
  const show = (x: number) => x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  return { value: `${show(value)}/s`, interval: hasInterval ? `${show(low)}–${show(high)}/s` : null };
}

function FigureCell({ figure, rate = false }: { figure: Figure | undefined; rate?: boolean }) {
  if (!figure || figure.value === null) return <span className="muted small">{figure?.how || "not measured"}</span>;
  const parts = (rate ? rateParts : latencyParts)(figure.value, figure.low, figure.high);
  return (
    <span title={figure.how}>
      {parts.value}
      <br />
      <span className="muted small">{parts.interval ? `95%: ${parts.interval}` : "no interval"}</span>
    </span>
  );
}

/** A verdict as a badge: the ratio's 95% band where it was called, "no change" where it is noise. */
export function ChangeBadge({ change }: { change: Change | undefined }) {
  if (!change) return <span className="muted">—</span>;
  const { verdict, ratio_low: low, ratio_high: high } = change;
  const tone = GOOD.has(verdict) ? "ok" : BAD.has(verdict) ? "bad" : verdict === "different" ? "warn" : "idle";
  let text = verdict.replace("_", " ");
  if (["faster", "higher"].includes(verdict) && low && high) text = `${band(low, high)} ${verdict}`;
  if (["slower", "lower"].includes(verdict) && low && high) text = `${band(1 / high, 1 / low)} ${verdict}`;
  return (
    <Badge tone={tone} title={change.sentence}>
      {text}
    </Badge>
  );
}

function band(low: number, high: number): string {
  const a = low.toFixed(2);
  const b = high.toFixed(2);
  return a === b ? `${a}×` : `${a}–${b}×`;
}

function sideLabel(side: ComparisonSide): string {
  return `${side.model} v${side.number}${side.variant ? ` · ${side.variant}` : ""}`;
}

function accuracyValue(value: unknown, digits: number): string {
  if (typeof value !== "number") return "—";
  return value === 0 || value === 1 ? String(value) : value.toPrecision(digits).replace(/0+$/, "").replace(/\.$/, "");
}

function supportText(side: ComparisonSide): ReactNode {
  if (!side.support_verdict) return <span className="muted">not checked</span>;
  return (
    <>
      {side.support_verdict}
      {side.unsupported_ops.length ? (
        <span className="small"> · can't run {side.unsupported_ops.join(", ")}</span>
      ) : null}
      {side.fallback_ops.length ? <span className="small"> · falls back: {side.fallback_ops.join(", ")}</span> : null}
    </>
  );
}

/** The two sides in columns, a verdict per row. `compact` leaves out the provenance rows. */
export function ComparisonTable({ comparison, compact = false }: { comparison: Comparison; compact?: boolean }) {
  const { a, b } = comparison;
  const latency = new Map(comparison.latency.map((c) => [c.what, c]));
  const accuracy = new Map(comparison.accuracy.map((c) => [c.what, c]));
  const outputs = [...new Set([...a.outputs.map((o) => o.name), ...b.outputs.map((o) => o.name)])];
  const output = (side: ComparisonSide, name: string) => side.outputs.find((o) => o.name === name);
  const row = (label: ReactNode, left: ReactNode, right: ReactNode, change?: Change) => (
    <tr>
      <th scope="row">{label}</th>
      <td>{left}</td>
      <td>{right}</td>
      <td>{change ? <ChangeBadge change={change} /> : null}</td>
    </tr>
  );
  return (
    <div className="table-scroll" tabIndex={0}>
      <table className="table compare-table">
        <thead>
          <tr>
            <th scope="col" />
            <th scope="col">A · {sideLabel(a)}</th>
            <th scope="col">B · {sideLabel(b)}</th>
            <th scope="col">B against A</th>
          </tr>
        </thead>
        <tbody>
          {row(
            "Variant",
            <span className="mono">
              {a.variant ?? "—"} <span className="muted small">({a.chosen})</span>
            </span>,
            <span className="mono">
              {b.variant ?? "—"} <span className="muted small">({b.chosen})</span>
            </span>,
          )}
          {row(
            "Backend · precision",
            `${a.backend || "—"} · ${a.precision || "—"}`,
            `${b.backend || "—"} · ${b.precision || "—"}`,
          )}
          {STATISTICS.map(([key, label]) => (
            <tr key={key}>
              <th scope="row">
                {label}
                {key === comparison.headline ? (
                  <span className="muted small" title="The statistic the summary leads with">
                    {" "}
                    (headline)
                  </span>
                ) : null}
              </th>
              <td>
                <FigureCell figure={a.latency[key]} />
              </td>
              <td>
                <FigureCell figure={b.latency[key]} />
              </td>
              <td>
                <ChangeBadge change={latency.get(key)} />
              </td>
            </tr>
          ))}
          {row(
            "Throughput",
            <FigureCell figure={a.throughput} rate />,
            <FigureCell figure={b.throughput} rate />,
            comparison.throughput,
          )}
          {outputs.flatMap((name) =>
            METRICS.filter(([metric]) => {
              const change = accuracy.get(`${name}:${metric}`);
              return change || output(a, name)?.[metric] != null || output(b, name)?.[metric] != null;
            }).map(([metric, label, digits]) => (
              <tr key={`${name}:${metric}`}>
                <th scope="row">
                  <span className="mono">{name}</span> {label}
                </th>
                <td className="num">{accuracyValue(output(a, name)?.[metric], digits)}</td>
                <td className="num">{accuracyValue(output(b, name)?.[metric], digits)}</td>
                <td>
                  <ChangeBadge change={accuracy.get(`${name}:${metric}`)} />
                </td>
              </tr>
            )),
          )}
          {row(
            "Parity",
            a.parity_passed === null ? "not checked" : a.parity_passed ? "pass" : "fail",
            b.parity_passed === null ? "not checked" : b.parity_passed ? "pass" : "fail",
          )}
          {row("Op support", supportText(a), supportText(b), comparison.support)}
          {row("Size", formatBytes(a.size_bytes), formatBytes(b.size_bytes), comparison.size)}
          {compact
            ? null
            : row(
                "Measured on",
                <span className="small">{a.measured_on || "—"}</span>,
                <span className="small">{b.measured_on || "—"}</span>,
              )}
          {compact
            ? null
            : row(
                "Parity inputs",
                <span className="small">{a.parity_inputs || "—"}</span>,
                <span className="small">{b.parity_inputs || "—"}</span>,
              )}
        </tbody>
      </table>
    </div>
  );
}

/** The summary, the table, every verdict as a sentence, and what to keep in mind. */
export function ComparisonView({ comparison }: { comparison: Comparison }) {
  const sentences = [
    ...comparison.latency,
    comparison.throughput,
    ...comparison.accuracy,
    comparison.size,
    comparison.support,
  ];
  const notes = [
    ...comparison.notes,
    ...comparison.a.notes.map((n) => `A: ${n}`),
    ...comparison.b.notes.map((n) => `B: ${n}`),
  ];
  return (
    <div className="comparison">
      <p className="lead">{comparison.summary}</p>
      <p className="muted small">
        On profile {comparison.profile}. A change is only called where the 95% intervals are apart and it exceeds 5%;
        anything else is "no change". Accuracy is each side against its own FP32 original.
      </p>
      {notes.map((note) => (
        <Notice key={note} kind="warn">
          {note}
        </Notice>
      ))}
      <ComparisonTable comparison={comparison} />
      <h3 className="h3">The verdicts in words</h3>
      <ul className="verdicts">
        {sentences.map((change) => (
          <li key={change.what}>{change.sentence}</li>
        ))}
      </ul>
    </div>
  );
}

/** The link to the compare view for two references. */
export function compareHref(a: string, b: string, profile?: string, team?: string): string {
  const params = new URLSearchParams({ a, b });
  if (profile) params.set("profile", profile);
  if (team) params.set("team", team);
  return `/compare?${params.toString()}`;
}

const REF_HINT =
  "A version id (17) or MODEL:NUMBER (scorer:3, scorer:latest), optionally /VARIANT (17/ort-int8, scorer:3/original).";

/** /compare?a=..&b=..&profile=..: the form, and the comparison it asks for. */
export function ComparePage() {
  const [params, setParams] = useSearchParams();
  const a = params.get("a") ?? "";
  const b = params.get("b") ?? "";
  const profile = params.get("profile") ?? "";
  const team = params.get("team") ?? "";
  const [draft, setDraft] = useState({ a, b, profile, team });
  const ids = { a: useId(), b: useId(), profile: useId(), team: useId() };
  const result = useResource(
    (signal) => (a && b ? get<Comparison>("compare/", { a, b, profile, team }, signal) : Promise.resolve(undefined)),
    [a, b, profile, team],
  );
  return (
    <>
      <PageHeader
        title="Compare"
        subtitle="Two versions of a model, or two variants, side by side on one hardware profile, as measured now."
      />
      <Section title="What to compare">
        <form
          className="form"
          onSubmit={(e) => {
            e.preventDefault();
            const next = new URLSearchParams();
            for (const [key, value] of Object.entries(draft)) if (value.trim()) next.set(key, value.trim());
            setParams(next);
          }}
        >
          <div className="form-grid">
            <div className="field">
              <label htmlFor={ids.a}>A (before)</label>
              <input
                id={ids.a}
                className="input mono"
                value={draft.a}
                placeholder="scorer:2"
                onChange={(e) => setDraft({ ...draft, a: e.target.value })}
              />
            </div>
            <div className="field">
              <label htmlFor={ids.b}>B (after)</label>
              <input
                id={ids.b}
                className="input mono"
                value={draft.b}
                placeholder="scorer:3/ort-int8"
                onChange={(e) => setDraft({ ...draft, b: e.target.value })}
              />
            </div>
            <div className="field">
              <label htmlFor={ids.profile}>Profile</label>
              <input
                id={ids.profile}
                className="input"
                value={draft.profile}
                placeholder="the only one both ran on"
                onChange={(e) => setDraft({ ...draft, profile: e.target.value })}
              />
            </div>
            <div className="field">
              <label htmlFor={ids.team}>Team</label>
              <input
                id={ids.team}
                className="input"
                value={draft.team}
                placeholder="if the model name is in several teams"
                onChange={(e) => setDraft({ ...draft, team: e.target.value })}
              />
            </div>
          </div>
          <p className="muted small">{REF_HINT} Without a variant, the version's recommended one.</p>
          <div className="form-actions">
            <button type="submit" className="button button-primary">
              Compare
            </button>
          </div>
        </form>
      </Section>
      {!a || !b ? null : result.error ? (
        <ErrorMessage error={result.error} title="These two can't be compared" />
      ) : !result.data || result.loading ? (
        <Loading label="Comparing…" height={400} />
      ) : (
        <Section title={`${sideLabel(result.data.b)} against ${sideLabel(result.data.a)}`}>
          <ComparisonView comparison={result.data} />
          <p className="small">
            <Link to={`/versions/${result.data.a.version_id}`}>Open A's version page</Link> ·{" "}
            <Link to={`/versions/${result.data.b.version_id}`}>Open B's version page</Link>
          </p>
        </Section>
      )}
    </>
  );
}

function ref(id: number, variant: string): string {
  return variant ? `${id}/${variant}` : String(id);
}

/** On a version's page: compare it (its recommended variant, the original, or a variant) with
 * another version of the model or another variant of itself, on one of its profiles. */
export function CompareWith({
  version,
  profiles,
  profile,
}: {
  version: VersionDetail;
  profiles: string[];
  profile: string;
}) {
  const navigate = useNavigate();
  const versions = useResource(
    async () => (await getAll<VersionSummary>(`models/${version.model}/versions/`, { team: version.team })).items,
    [version.model, version.team],
  );
  const variants = [
    ...new Set(Object.values(version.reports.optimize ?? {}).flatMap((o) => o.variants.map((v) => v.name))),
  ];
  const previous = versions.data?.find((v) => v.number < version.number && v.status === "approved");
  const [ours, setOurs] = useState("");
  const [other, setOther] = useState<number | "">("");
  const [theirs, setTheirs] = useState("");
  const [onProfile, setOnProfile] = useState(profile);
  const ids = { ours: useId(), other: useId(), theirs: useId(), profile: useId() };
  const otherId = other === "" ? (previous?.id ?? version.id) : other;
  const variantOptions = (
    <>
      <option value="">the recommended variant</option>
      <option value="original">the original model (plain onnxruntime)</option>
      {variants.map((name) => (
        <option key={name} value={name}>
          {name}
        </option>
      ))}
    </>
  );
  return (
    <form
      className="form"
      aria-label="Compare with another version or variant"
      onSubmit={(e) => {
        e.preventDefault();
        navigate(compareHref(ref(otherId, theirs), ref(version.id, ours), onProfile));
      }}
    >
      <div className="form-grid">
        <div className="field">
          <label htmlFor={ids.ours}>This version's</label>
          <select id={ids.ours} className="input" value={ours} onChange={(e) => setOurs(e.target.value)}>
            {variantOptions}
          </select>
        </div>
        <div className="field">
          <label htmlFor={ids.other}>Compare with</label>
          <select id={ids.other} className="input" value={otherId} onChange={(e) => setOther(Number(e.target.value))}>
            {(versions.data ?? [version]).map((v) => (
              <option key={v.id} value={v.id}>
                {v.id === version.id ? `this version (v${v.number})` : `v${v.number} (${v.status})`}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={ids.theirs}>Its</label>
          <select id={ids.theirs} className="input" value={theirs} onChange={(e) => setTheirs(e.target.value)}>
            {variantOptions}
          </select>
        </div>
        {profiles.length > 1 ? (
          <div className="field">
            <label htmlFor={ids.profile}>On profile</label>
            <select id={ids.profile} className="input" value={onProfile} onChange={(e) => setOnProfile(e.target.value)}>
              {profiles.map((p) => (
                <option key={p}>{p}</option>
              ))}
            </select>
          </div>
        ) : null}
      </div>
      {versions.error ? <ErrorMessage error={versions.error} title="The model's versions could not be listed" /> : null}
      <div className="form-actions">
        <button type="submit" className="button">
          Compare…
        </button>
      </div>
    </form>
  );
}
