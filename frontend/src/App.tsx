import { useEffect, useRef } from "react";
import { Navigate, Route, Routes, useLocation } from "react-router";
import { useSession } from "./auth/session";
import { Nav } from "./components/Nav";
import { ErrorMessage, Loading } from "./components/ui";
import { ComparePage } from "./features/Compare";
import { AuditPage } from "./pages/AuditPage";
import { DeploymentsPage } from "./pages/DeploymentsPage";
import { JoinPage } from "./pages/JoinPage";
import { LoginPage } from "./pages/LoginPage";
import { ModelPage } from "./pages/ModelPage";
import { ModelsPage } from "./pages/ModelsPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { ReviewQueuePage } from "./pages/ReviewQueuePage";
import { TargetsPage } from "./pages/TargetsPage";
import { TeamPage } from "./pages/TeamPage";
import { TokensPage } from "./pages/TokensPage";
import { UploadPage } from "./pages/UploadPage";
import { VersionPage } from "./pages/VersionPage";
import { WorkersPage } from "./pages/WorkersPage";

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
  if (location.pathname === "/login" || location.pathname === "/join") {
    return (
      <Routes>
        <Route path="/login" element={<LoginPage />} />
        <Route path="/join" element={<JoinPage />} />
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
            <Route path="/teams" element={<TeamPage />} />
            <Route path="/teams/:slug" element={<TeamPage />} />
            <Route path="/audit" element={<AuditPage />} />
            <Route path="/tokens" element={<TokensPage />} />
            <Route path="*" element={<NotFoundPage />} />
          </Routes>
        </main>
      </div>
    </RequireSession>
  );
}
