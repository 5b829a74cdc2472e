import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, getIfChanged } from "../api/client";

export interface Resource<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
  setData: (data: T) => void;
}

function asApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  return new ApiError(0, {
    code: "error",
    message: error instanceof Error ? error.message : String(error),
    fields: {},
  });
}

/** Load something once per change of `deps`; the last answer wins, earlier ones are dropped. */
export function useResource<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Resource<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(true);
  const [nonce, setNonce] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    load(controller.signal)
      .then((value) => {
        if (controller.signal.aborted) return;
        setData(value);
        setError(undefined);
      })
      .catch((err: unknown) => {
        if (controller.signal.aborted || (err instanceof DOMException && err.name === "AbortError")) return;
        setError(asApiError(err));
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, nonce]);
  const reload = useCallback(() => setNonce((n) => n + 1), []);
  return { data, error, loading, reload, setData };
}

export interface Polled<T> extends Resource<T> {
  /** When the last answer (200 or 304) came. */
  checkedAt: number | undefined;
}

/**
 * Poll a GET endpoint with If-None-Match while `active(data)` holds (e.g. a pipeline still
 * running); 304 answers keep the data as it was. Pauses while the tab is hidden.
 */
export function usePolled<T>(path: string, intervalMs: number, active: (data: T | undefined) => boolean): Polled<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(true);
  const [checkedAt, setCheckedAt] = useState<number>();
  const [nonce, setNonce] = useState(0);
  const etag = useRef<string | null>(null);
  const dataRef = useRef<T | undefined>(undefined);
  const activeRef = useRef(active);
  activeRef.current = active;

  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const controller = new AbortController();
    etag.current = null;

    const tick = async () => {
      if (document.hidden) {
        timer = setTimeout(tick, intervalMs);
        return;
      }
      try {
        const answer = await getIfChanged<T>(path, etag.current, controller.signal);
        if (stopped) return;
        if (answer.changed) {
          etag.current = answer.etag;
          dataRef.current = answer.data;
          setData(answer.data);
        }
        setError(undefined);
        setCheckedAt(Date.now());
      } catch (err) {
        if (stopped || (err instanceof DOMException && err.name === "AbortError")) return;
        setError(asApiError(err));
      } finally {
        if (!stopped) setLoading(false);
      }
      if (!stopped && activeRef.current(dataRef.current)) timer = setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [path, intervalMs, nonce]);

  const reload = useCallback(() => setNonce((n) => n + 1), []);
  const set = useCallback((value: T) => {
    dataRef.current = value;
    setData(value);
  }, []);
  return { data, error, loading, reload, setData: set, checkedAt };
}

/** A value that follows `value` after it stopped changing for `ms` (search boxes). */
export function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return debounced;
}

/** Re-render every `ms` (relative times such as "12 s ago"). */
export function useNow(ms = 5000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}
