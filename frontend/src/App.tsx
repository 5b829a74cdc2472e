import { useEffect, useRef } from "react";
import { Navigate, NavLink, Route, Routes, useLocation, useNavigate } from "react-router";
import { canAnywhere, useSession } from "./auth/session";
import { ErrorMessage, Loading } from "./components/ui";
import { ComparePage } from "./features/Compare";
import { AuditPage } from "./pages/AuditPage";
import { DeploymentsPage } from "./pages/DeploymentsPage";
import { LoginPage } from "./pages/LoginPage";
import { ModelPage } from "./pages/ModelPage";
import { ModelsPage } from "./pages/ModelsPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { ReviewQueuePage } from "./pages/ReviewQueuePage";
import { TargetsPage } from "./pages/TargetsPage";
import { TokensPage } from "./pages/TokensPage";
import { UploadPage } from "./pages/UploadPage";
import { VersionPage } from "./pages/VersionPage";
import { WorkersPage } from "./pages/WorkersPage";
import { ROLES, type Role } from "./api/types";

function Nav() {
  const { me, signOut } = useSession();
  const navigate = useNavigate();
  const links: [string, string, boolean][] = [
    ["/models", "Models", true],
    ["/upload", "Upload", canAnywhere(me, "upload")],
    ["/review", "Review queue", canAnywhere(me, "review")],
    ["/compare", "Compare", true],
    ["/deployments", "Deployments", true],
    ["/targets", "Serving targets", true],
    ["/workers", "Workers", true],
    ["/audit", "Audit log", true],
    ["/tokens", "API tokens", true],
  ];
  return (
    <nav className="sidebar" aria-label="Main">
      <NavLink to="/models" className="brand">
        <svg width="22" height="22" viewBox="0 0 16 16" aria-hidden="true">
          <path d="M1 12h14l-2 3H3z" fill="currentColor" />
          <path d="M8 1v10M8 2l5 8H8" stroke="currentColor" fill="none" strokeWidth="1.3" />
        </svg>
        Slipway
      </NavLink>
      <ul className="nav-links">
        {links
          .filter(([, , shown]) => shown)
          .map(([to, label]) => (
            <li key={to}>
              <NavLink to={to} className={({ isActive }) => (isActive ? "nav-link active" : "nav-link")}>
                {label}
              </NavLink>
            </li>
          ))}
      </ul>
      {me ? (
        <div className="whoami">
          <div className="whoami-name">{me.username}</div>
          <ul className="whoami-teams">
            {me.is_superuser ? <li>Superuser: admin everywhere</li> : null}
            {me.teams.map((team) => (
              <li key={team.slug}>
                {team.slug}: {ROLES[team.role as Role] ?? team.role}
              </li>
            ))}
          </ul>
          <button
            type="button"
            className="button button-quiet button-small"
            onClick={async () => {
              await signOut();
              navigate("/login");
            }}
          >
            Sign out
          </button>
          <a className="small" href="/api/docs/">
            API docs
          </a>
        </div>
      ) : null}
    </nav>
  );
}

function RequireSession({ children }: { children: React.ReactNode }) {
  const { me, error, refresh } = useSession();
  const location = useLocation();
  if (me === undefined) {
    return error ? (
      <main className="content">
        <ErrorMessage
          error={error}
          title="Slipway can't tell who you are"
          action={
            <button className="button" onClick={() => void refresh()}>
              Retry
            </button>
          }
        />
      </main>
    ) : (
      <Loading label="Signing you in…" height={300} />
    );
  }
  if (me === null) {
    const next = location.pathname + location.search;
    return <Navigate to={`/login?next=${encodeURIComponent(next)}`} replace />;
  }
  return <>{children}</>;
}

export function App() {
  const location = useLocation();
  const main = useRef<HTMLElement>(null);
  // Move focus to the page on navigation, so keyboard and screen-reader users start at its top.
  useEffect(() => {
    main.current?.focus({ preventScroll: true });
  }, [location.pathname]);
  if (location.pathname === "/login") {
    return (
      <Routes>
        <Route path="/login" element={<LoginPage />} />
      </Routes>
    );
  }
  return (
    <RequireSession>
      <a href="#main" className="skip-link">
        Skip to content
      </a>
      <div className="shell">
        <Nav />
        <main id="main" className="content" ref={main} tabIndex={-1}>
          <Routes>
            <Route path="/" element={<Navigate to="/models" replace />} />
            <Route path="/models" element={<ModelsPage />} />
            <Route path="/models/:slug" element={<ModelPage />} />
            <Route path="/upload" element={<UploadPage />} />
            <Route path="/versions/:id" element={<VersionPage />} />
            <Route path="/compare" element={<ComparePage />} />
            <Route path="/review" element={<ReviewQueuePage />} />
            <Route path="/review/:id" element={<ReviewQueuePage />} />
            <Route path="/deployments" element={<DeploymentsPage />} />
            <Route path="/targets" element={<TargetsPage />} />
            <Route path="/workers" element={<WorkersPage />} />
            <Route path="/audit" element={<AuditPage />} />
            <Route path="/tokens" element={<TokensPage />} />
            <Route path="*" element={<NotFoundPage />} />
          </Routes>
        </main>
      </div>
    </RequireSession>
  );
}
