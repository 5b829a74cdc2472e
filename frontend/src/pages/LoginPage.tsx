import { useEffect, useId, useRef, useState } from "react";
import { Navigate, useNavigate, useSearchParams } from "react-router";
import { ApiError, get } from "../api/client";
import { useSession } from "../auth/session";
import { ErrorMessage, Notice } from "../components/ui";

/** Only paths inside the app: a `next` that points elsewhere is ignored. */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/login")) return "/models";
  return next;
}

export function LoginPage() {
  const { me, expired, signIn } = useSession();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const userId = useId();
  const passId = useId();
  const first = useRef<HTMLInputElement>(null);
  const next = safeNext(params.get("next"));

  useEffect(() => {
    first.current?.focus();
    // Make sure the CSRF cookie exists before the form posts (the app's page sets it too).
    get("session/").catch(() => undefined);
  }, []);

  if (me) return <Navigate to={next} replace />;

  return (
    <main className="login">
      <form
        className="login-card form"
        onSubmit={async (e) => {
          e.preventDefault();
          if (!username.trim() || !password) {
            setError(
              new ApiError(400, { code: "invalid", message: "Enter your username and your password.", fields: {} }),
            );
            return;
          }
          setBusy(true);
          setError(undefined);
          try {
            await signIn(username.trim(), password);
            navigate(next, { replace: true });
          } catch (err) {
            setError(err instanceof ApiError ? err : undefined);
            setPassword("");
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1 className="login-title">Sign in to Slipway</h1>
        {expired ? <Notice kind="warn">Your session ended. Sign in again to continue where you were.</Notice> : null}
        <div className="field">
          <label htmlFor={userId}>Username</label>
          <input
            ref={first}
            id={userId}
            className="input"
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={passId}>Password</label>
          <input
            id={passId}
            className="input"
            type="password"
            name="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </div>
        {error ? <ErrorMessage error={error} /> : null}
        <button type="submit" className="button button-primary button-wide" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <p className="muted small">
          No account yet? A team admin adds you to a team. Scripts and CI use API tokens instead (
          <a href="/api/docs/">API docs</a>).
        </p>
      </form>
    </main>
  );
}
