// The one way the app talks to Slipway: the public REST API under /api/v1, with the browser
// session cookie, the CSRF token on writes, and every error turned into an ApiError that
// carries the API's own sentence (`message`) for the page to show.
export interface ApiErrorBody {
  code: string;
  message: string;
  fields: Record<string, unknown>;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: Record<string, unknown>;

  constructor(status: number, body: ApiErrorBody) {
    super(body.message);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code;
    this.fields = body.fields ?? {};
  }

  /** The first message for a form field, if the API named one. */
  fieldMessage(name: string): string | undefined {
    const value = this.fields[name];
    if (Array.isArray(value)) return value.map(String).join(" ");
    if (typeof value === "string") return value;
    return undefined;
  }
}

export const API = "/api/v1";

export function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match?.[1] ? decodeURIComponent(match[1]) : "";
}

type UnauthorizedListener = () => void;
const unauthorizedListeners = new Set<UnauthorizedListener>();

/** Called when any request answers 401: the session ended (expired, or signed out elsewhere). */
export function onUnauthorized(listener: UnauthorizedListener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export function apiUrl(path: string, query?: Record<string, string | number | boolean | undefined | null>): string {
  const url = path.startsWith("/") ? path : `${API}/${path}`;
  if (!query) return url;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${url}${url.includes("?") ? "&" : "?"}${text}` : url;
}

/** Turn a failed response into an ApiError with a sentence, whatever the body was. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (body && typeof body === "object" && "message" in body && typeof (body as ApiErrorBody).message === "string") {
    const b = body as ApiErrorBody;
    return new ApiError(response.status, { code: b.code ?? "error", message: b.message, fields: b.fields ?? {} });
  }
  return new ApiError(response.status, {
    code: "http_" + response.status,
    message:
      response.status >= 500
        ? `Slipway answered with an error (HTTP ${response.status}). Retry in a moment; if it keeps happening, check the server's log.`
        : `Slipway answered HTTP ${response.status} without an explanation.`,
    fields: {},
  });
}

export function networkError(): ApiError {
  return new ApiError(0, {
    code: "network",
    message: "Slipway can't be reached. Check your connection and that the server is running, then retry.",
    fields: {},
  });
}

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined | null>;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

async function send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
  const init: RequestInit = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (options.signal) init.signal = options.signal;
  if (method !== "GET" && method !== "HEAD") {
    headers["X-CSRFToken"] = csrfToken();
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
  }
  let response: Response;
  try {
    response = await fetch(apiUrl(path, options.query), init);
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw networkError();
  }
  if (response.status === 401 && !path.includes("/session/")) {
    unauthorizedListeners.forEach((listener) => listener());
  }
  return response;
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await send(method, path, options);
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string, query?: RequestOptions["query"], signal?: AbortSignal) =>
  request<T>("GET", path, { query, signal });
export const post = <T>(path: string, body?: unknown) => request<T>("POST", path, { body });
export const patch = <T>(path: string, body?: unknown) => request<T>("PATCH", path, { body });
export const del = (path: string) => request<void>("DELETE", path);

export type Conditional<T> = { changed: true; data: T; etag: string | null } | { changed: false };

/**
 * GET with If-None-Match: the API answers 304 when nothing changed since `etag`, so polling a
 * running pipeline costs the server no serialization and the page no re-render.
 */
export async function getIfChanged<T>(
  path: string,
  etag: string | null,
  signal?: AbortSignal,
): Promise<Conditional<T>> {
  const options: RequestOptions = { headers: etag ? { "If-None-Match": etag } : {} };
  if (signal) options.signal = signal;
  const response = await send("GET", path, options);
  if (response.status === 304) return { changed: false };
  if (!response.ok) throw await errorFrom(response);
  return { changed: true, data: (await response.json()) as T, etag: response.headers.get("ETag") };
}

/** Every page of a cursor-paginated list (the API's `next` links), up to `limit` items. */
export async function getAll<T>(
  path: string,
  query: RequestOptions["query"] = {},
  limit = 2000,
): Promise<{ items: T[]; truncated: boolean }> {
  const items: T[] = [];
  let url: string | null = apiUrl(path, { page_size: 500, ...query });
  while (url && items.length < limit) {
    const page: { results: T[]; next?: string | null } | T[] = await request("GET", sameOrigin(url));
    if (Array.isArray(page)) {
      items.push(...page); // an unpaginated list
      url = null;
      break;
    }
    items.push(...page.results);
    url = page.next ?? null;
  }
  return { items, truncated: url !== null };
}

/** The API's pagination links are absolute; keep the path and query so requests stay same-origin. */
export function sameOrigin(url: string): string {
  try {
    const parsed = new URL(url, window.location.origin);
    return parsed.pathname + parsed.search;
  } catch {
    return url;
  }
}
