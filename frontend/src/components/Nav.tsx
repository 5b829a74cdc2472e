// The app's main navigation: a sidebar on wide screens; on narrow ones (styles.css, 800 px) a top
// bar with the brand and a Menu button that shows the links below it. The menu's open state
// only matters there: CSS hides the closed menu below the breakpoint and ignores it above.
import { useEffect, useId, useRef, useState } from "react";
import { NavLink, useLocation, useNavigate } from "react-router";
import { ROLES, type Role } from "../api/types";
import { canAnywhere, useSession } from "../auth/session";

export function Nav() {
  const { me, signOut } = useSession();
  const navigate = useNavigate();
  const location = useLocation();
  const menuId = useId();
  const [open, setOpen] = useState(false);
  const button = useRef<HTMLButtonElement>(null);
  const menu = useRef<HTMLDivElement>(null);

  // Any navigation closes the menu (a link in it, the brand, Back), so the page is what shows.
  useEffect(() => setOpen(false), [location.pathname]);

  useEffect(() => {
    if (!open) return;
    const onKey = (event: KeyboardEvent) => {
      if (event.key !== "Escape") return;
      setOpen(false);
      // focus inside the menu would be lost when it hides: give it back to the button
      if (menu.current?.contains(document.activeElement)) button.current?.focus();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [open]);

  const links: [string, string, boolean][] = [
    ["/models", "Models", true],
    ["/upload", "Upload", canAnywhere(me, "upload")],
    ["/review", "Review queue", canAnywhere(me, "review")],
    ["/compare", "Compare", true],
    ["/deployments", "Deployments", true],
    ["/targets", "Serving targets", true],
    ["/workers", "Workers", true],
    ["/teams", me?.teams.length === 1 ? "Team" : "Teams", true],
    ["/audit", "Audit log", true],
    ["/tokens", "API tokens", true],
  ];
  return (
    <nav className={open ? "sidebar is-open" : "sidebar"} aria-label="Main">
      <div className="sidebar-bar">
        <NavLink to="/models" className="brand" onClick={() => setOpen(false)}>
          <svg width="22" height="22" viewBox="0 0 16 16" aria-hidden="true">
            <path d="M1 12h14l-2 3H3z" fill="currentColor" />
            <path d="M8 1v10M8 2l5 8H8" stroke="currentColor" fill="none" strokeWidth="1.3" />
          </svg>
          Slipway
        </NavLink>
        <button
          ref={button}
          type="button"
          className="menu-button"
          aria-expanded={open}
          aria-controls={menuId}
          onClick={() => setOpen((was) => !was)}
        >
          <svg width="18" height="18" viewBox="0 0 18 18" aria-hidden="true" focusable="false">
            {open ? (
              <path d="M4 4l10 10M14 4L4 14" stroke="currentColor" strokeWidth="2" />
            ) : (
              <path d="M2 4h14M2 9h14M2 14h14" stroke="currentColor" strokeWidth="2" />
            )}
          </svg>
          Menu
        </button>
      </div>
      <div id={menuId} className="sidebar-menu" ref={menu}>
        <ul className="nav-links">
          {links
            .filter(([, , shown]) => shown)
            .map(([to, label]) => (
              <li key={to}>
                <NavLink
                  to={to}
                  className={({ isActive }) => (isActive ? "nav-link active" : "nav-link")}
                  onClick={() => setOpen(false)}
                >
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
      </div>
    </nav>
  );
}
