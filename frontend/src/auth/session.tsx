import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { ApiError, del, get, onUnauthorized, post } from "../api/client";
import type { Me, Role } from "../api/types";

type Action = "view" | "upload" | "review" | "deploy" | "manage";

// The same table as apps/accounts/permissions.py ROLE_ACTIONS: the page hides what the API
// would refuse, and the API still decides.
const ROLE_ACTIONS: Record<Role, Action[]> = {
  viewer: ["view"],
  data_scientist: ["view", "upload"],
  approver: ["view", "review", "deploy"],
  admin: ["view", "upload", "review", "deploy", "manage"],
};

interface SessionState {
  me: Me | null | undefined; // undefined: still asking; null: signed out
  expired: boolean;
  error: ApiError | undefined;
  signIn: (username: string, password: string) => Promise<Me>;
  signOut: () => Promise<void>;
  refresh: () => Promise<void>;
}

const SessionContext = createContext<SessionState | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [expired, setExpired] = useState(false);
  const [error, setError] = useState<ApiError>();

  const refresh = useCallback(async () => {
    try {
      setMe(await get<Me>("session/"));
      setError(undefined);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setMe(null);
      else setError(err instanceof ApiError ? err : undefined);
    }
  }, []);

  useEffect(() => {
    void refresh();
  }, [refresh]);

  useEffect(
    () =>
      onUnauthorized(() => {
        setMe((current) => {
          if (current) setExpired(true);
          return null;
        });
      }),
    [],
  );

  const signIn = useCallback(async (username: string, password: string) => {
    const who = await post<Me>("session/", { username, password });
    setMe(who);
    setExpired(false);
    return who;
  }, []);

  const signOut = useCallback(async () => {
    try {
      await del("session/");
    } finally {
      setMe(null);
      setExpired(false);
    }
  }, []);

  const value = useMemo(
    () => ({ me, expired, error, signIn, signOut, refresh }),
    [me, expired, error, signIn, signOut, refresh],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

/** The signed-in user where a session is known (undefined in isolated component tests). */
export function useMe(): Me | null | undefined {
  return useContext(SessionContext)?.me;
}

export function useSession(): SessionState {
  const state = useContext(SessionContext);
  if (!state) throw new Error("useSession outside SessionProvider");
  return state;
}

export function roleIn(me: Me | null | undefined, team: string): Role | undefined {
  if (!me) return undefined;
  if (me.is_superuser) return "admin";
  return me.teams.find((t) => t.slug === team)?.role as Role | undefined;
}

export function can(me: Me | null | undefined, team: string, action: Action): boolean {
  const role = roleIn(me, team);
  return role !== undefined && ROLE_ACTIONS[role].includes(action);
}

/** Teams where the user may do `action` (superusers: every team they belong to). */
export function teamsWhere(me: Me | null | undefined, action: Action): Me["teams"] {
  if (!me) return [];
  return me.teams.filter((t) => me.is_superuser || ROLE_ACTIONS[t.role as Role]?.includes(action));
}

export function canAnywhere(me: Me | null | undefined, action: Action): boolean {
  return Boolean(me?.is_superuser) || teamsWhere(me, action).length > 0;
}
