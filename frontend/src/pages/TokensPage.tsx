import { useId, useState } from "react";
import { ApiError, del, get, post } from "../api/client";
import type { Token, TokenCreated, TokenScope } from "../api/types";
import {
  ConfirmButton,
  Empty,
  ErrorMessage,
  Loading,
  PageHeader,
  Section,
  ShownOnce,
  StatusBadge,
} from "../components/ui";
import { formatDateTime, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";

const SCOPES: { scope: TokenScope; help: string }[] = [
  { scope: "read", help: "see models, versions, reports" },
  { scope: "upload", help: "upload versions, re-run pipelines" },
  { scope: "approve", help: "approve, reject, revoke" },
  { scope: "deploy", help: "deploy and roll back" },
  { scope: "admin", help: "manage the team, tokens, targets" },
];

export function validateToken(name: string, scopes: TokenScope[], days: string): string | undefined {
  if (!name.trim()) return "Name the token after what will use it, e.g. ci-pipeline.";
  if (!scopes.length) return "Choose at least one scope.";
  const n = Number(days);
  if (!Number.isInteger(n) || n < 1) return "The lifetime is a whole number of days, 1 or more.";
  return undefined;
}

function CreatedToken({ token, onDone }: { token: TokenCreated; onDone: () => void }) {
  return (
    <ShownOnce
      title={`Copy the token "${token.name}" now`}
      values={[{ label: "The new token", text: token.token, copyLabel: "Copy token" }]}
      doneLabel="I have copied it"
      onDone={onDone}
    >
      {token.message} Keep it in your CI's secret store; anyone holding it acts as you within its scopes (
      {token.scopes.join(", ")}).
    </ShownOnce>
  );
}

export function TokensPage() {
  const tokens = useResource(() => get<Token[]>("tokens/"), []);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<TokenScope[]>(["read"]);
  const [days, setDays] = useState("90");
  const [problem, setProblem] = useState<string>();
  const [failure, setFailure] = useState<ApiError>();
  const [created, setCreated] = useState<TokenCreated>();
  const [busy, setBusy] = useState(false);
  const id = useId();

  return (
    <>
      <PageHeader
        title="API tokens"
        subtitle="Tokens let scripts, the CLI and CI act as you, limited to the scopes you give them and never beyond your role."
      />
      {created ? <CreatedToken token={created} onDone={() => setCreated(undefined)} /> : null}
      <Section id="tokens" title="Your tokens">
        {tokens.error ? (
          <ErrorMessage error={tokens.error} />
        ) : !tokens.data ? (
          <Loading height={120} />
        ) : tokens.data.length === 0 ? (
          <Empty title="You have no API tokens." />
        ) : (
          <div className="table-scroll" tabIndex={0}>
            <table className="table">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Token</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">State</th>
                  <th scope="col">Created</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Last used</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {tokens.data.map((t) => (
                  <tr key={t.id} className={t.active ? undefined : "row-stopped"}>
                    <th scope="row">{t.name}</th>
                    <td className="mono small">{t.prefix}</td>
                    <td>{t.scopes.join(", ")}</td>
                    <td>
                      {t.active ? (
                        <StatusBadge status="live" label="Active" />
                      ) : (
                        <StatusBadge status="retired" label={t.revoked_at ? "Revoked" : "Expired"} />
                      )}
                    </td>
                    <td title={formatDateTime(t.created_at)}>{formatRelative(t.created_at)}</td>
                    <td>{formatDateTime(t.expires_at)}</td>
                    <td>{t.last_used_at ? formatRelative(t.last_used_at) : "never"}</td>
                    <td className="actions">
                      {t.active ? (
                        <ConfirmButton
                          className="button button-small button-quiet"
                          confirmLabel={`Revoke ${t.name}`}
                          onConfirm={async () => {
                            try {
                              await del(`tokens/${t.id}/`);
                            } catch (err) {
                              setFailure(err instanceof ApiError ? err : undefined);
                            }
                            tokens.reload();
                          }}
                        >
                          Revoke
                        </ConfirmButton>
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
      <Section id="new-token" title="Create a token">
        <form
          className="form"
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const found = validateToken(name, scopes, days);
            setProblem(found);
            setFailure(undefined);
            if (found) return;
            setBusy(true);
            try {
              const token = await post<TokenCreated>("tokens/", {
                name: name.trim(),
                scopes,
                expires_in_days: Number(days),
              });
              setCreated(token);
              setName("");
              tokens.reload();
              window.scrollTo({ top: 0 });
            } catch (err) {
              setFailure(err instanceof ApiError ? err : undefined);
            } finally {
              setBusy(false);
            }
          }}
        >
          <div className="form-grid">
            <div className="field">
              <label htmlFor={`${id}-name`}>Name</label>
              <input
                id={`${id}-name`}
                className="input"
                value={name}
                onChange={(e) => setName(e.target.value)}
                placeholder="ci-pipeline"
              />
            </div>
            <div className="field">
              <label htmlFor={`${id}-days`}>Expires after (days)</label>
              <input
                id={`${id}-days`}
                className="input"
                inputMode="numeric"
                value={days}
                onChange={(e) => setDays(e.target.value)}
              />
            </div>
          </div>
          <fieldset className="field fieldset">
            <legend>Scopes</legend>
            <div className="checks">
              {SCOPES.map(({ scope, help }) => (
                <label key={scope} className="checkbox">
                  <input
                    type="checkbox"
                    checked={scopes.includes(scope)}
                    onChange={(e) =>
                      setScopes(e.target.checked ? [...scopes, scope] : scopes.filter((s) => s !== scope))
                    }
                  />
                  {scope} <span className="muted small">({help})</span>
                </label>
              ))}
            </div>
          </fieldset>
          {problem ? (
            <p className="field-error" role="alert">
              {problem}
            </p>
          ) : null}
          {failure ? <ErrorMessage error={failure} title="The token was not created" /> : null}
          <div className="form-actions">
            <button type="submit" className="button button-primary" disabled={busy}>
              {busy ? "Creating…" : "Create token"}
            </button>
          </div>
        </form>
      </Section>
    </>
  );
}
