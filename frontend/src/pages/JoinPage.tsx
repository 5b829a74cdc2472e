// Redeeming a team invitation: the link carries the code in its fragment (never sent to a
// server), or the invitee pastes the code. Signed out, they create an account; signed in,
// they join with the one they have.
import { useEffect, useId, useState } from "react";
import { Link, useNavigate } from "react-router";
import { ApiError, get, post } from "../api/client";
import type { InvitationPreview, Me, Role } from "../api/types";
import { ROLES } from "../api/types";
import { useSession } from "../auth/session";
import { ErrorMessage, Loading, Notice } from "../components/ui";
import { formatDateTime } from "../lib/format";

const KEPT = "slipway.invitation";

/** The code from the link's fragment (`#code=…`), else one kept while the invitee signed in. */
export function codeFromLocation(hash: string): string {
  const fromHash = new URLSearchParams(hash.replace(/^#/, "")).get("code");
  return (fromHash ?? sessionStorage.getItem(KEPT) ?? "").trim();
}

export function JoinPage() {
  const { me, refresh } = useSession();
  const navigate = useNavigate();
  const [code, setCode] = useState(() => codeFromLocation(window.location.hash));
  const [typed, setTyped] = useState("");
  const [preview, setPreview] = useState<InvitationPreview>();
  const [error, setError] = useState<ApiError>();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const [problem, setProblem] = useState<string>();
  const [busy, setBusy] = useState(false);
  const id = useId();

  useEffect(() => {
    if (!code) return;
    let live = true;
    setError(undefined);
    // The CSRF cookie first: the accept form posts with it.
    get("session/")
      .catch(() => undefined)
      .then(() => post<InvitationPreview>("invitations/preview/", { code }))
      .then((found) => live && setPreview(found))
      .catch((err) => live && setError(err instanceof ApiError ? err : undefined));
    return () => {
      live = false;
    };
  }, [code, me?.username]);

  const accept = async () => {
    setProblem(undefined);
    if (!me) {
      if (!username.trim()) return setProblem("Choose a user name.");
      if (password.length < 8) return setProblem("Choose a password of at least 8 characters.");
      if (password !== again) return setProblem("The two passwords differ; type the same one twice.");
    }
    setBusy(true);
    setError(undefined);
    try {
      await post<Me>("invitations/accept/", me ? { code } : { code, username: username.trim(), password });
      sessionStorage.removeItem(KEPT);
      await refresh();
      navigate(preview ? `/teams/${preview.team}` : "/models", { replace: true });
    } catch (err) {
      setError(err instanceof ApiError ? err : undefined);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="login">
      <div className="login-card form">
        <h1 className="login-title">Join a team on Slipway</h1>
        {!code ? (
          <form
            className="form"
            noValidate
            onSubmit={(e) => {
              e.preventDefault();
              setCode(typed.trim());
            }}
          >
            <div className="field">
              <label htmlFor={`${id}-code`}>Invitation code</label>
              <input
                id={`${id}-code`}
                className="input mono"
                value={typed}
                placeholder="slwinv_…"
                onChange={(e) => setTyped(e.target.value)}
              />
              <p className="help">The team admin who invited you has the code or a link with it.</p>
            </div>
            <button type="submit" className="button button-primary button-wide" disabled={!typed.trim()}>
              Continue
            </button>
          </form>
        ) : error && !preview ? (
          <>
            <ErrorMessage error={error} title="This invitation can't be used" />
            <button
              type="button"
              className="button"
              onClick={() => {
                sessionStorage.removeItem(KEPT);
                setCode("");
                setError(undefined);
              }}
            >
              Enter another code
            </button>
          </>
        ) : !preview ? (
          <Loading label="Reading the invitation…" height={80} />
        ) : preview.state !== "pending" ? (
          <Notice kind="warn" title={`This invitation is ${preview.state}`}>
            Ask an admin of team {preview.team_name} for a new one.
          </Notice>
        ) : (
          <form
            className="form"
            noValidate
            onSubmit={(e) => {
              e.preventDefault();
              void accept();
            }}
          >
            <p>
              <strong>{preview.invited_by}</strong> invites you to team <strong>{preview.team_name}</strong> as{" "}
              <strong>{ROLES[preview.role as Role] ?? preview.role}</strong>. The invitation works once, until{" "}
              {formatDateTime(preview.expires_at)}.
            </p>
            {me ? (
              <p>
                You will join as <strong>{me.username}</strong>.
              </p>
            ) : (
              <>
                <div className="field">
                  <label htmlFor={`${id}-user`}>Choose a user name</label>
                  <input
                    id={`${id}-user`}
                    className="input"
                    autoComplete="username"
                    value={username}
                    onChange={(e) => setUsername(e.target.value)}
                  />
                </div>
                <div className="field">
                  <label htmlFor={`${id}-pass`}>Choose a password</label>
                  <input
                    id={`${id}-pass`}
                    className="input"
                    type="password"
                    autoComplete="new-password"
                    value={password}
                    onChange={(e) => setPassword(e.target.value)}
                  />
                </div>
                <div className="field">
                  <label htmlFor={`${id}-again`}>The password again</label>
                  <input
                    id={`${id}-again`}
                    className="input"
                    type="password"
                    autoComplete="new-password"
                    value={again}
                    onChange={(e) => setAgain(e.target.value)}
                  />
                </div>
                <p className="small">
                  Already have an account?{" "}
                  <Link to="/login?next=/join" onClick={() => sessionStorage.setItem(KEPT, code)}>
                    Sign in first
                  </Link>{" "}
                  and you will come back here.
                </p>
              </>
            )}
            {problem ? (
              <p className="field-error" role="alert">
                {problem}
              </p>
            ) : null}
            {error ? <ErrorMessage error={error} title="You have not joined yet" /> : null}
            <button type="submit" className="button button-primary button-wide" disabled={busy}>
              {busy ? "Joining…" : me ? `Join ${preview.team_name}` : "Create the account and join"}
            </button>
          </form>
        )}
      </div>
    </main>
  );
}
