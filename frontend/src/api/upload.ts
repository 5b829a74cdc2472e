// Uploads go through XMLHttpRequest rather than fetch: only XHR reports upload progress,
// which a multi-gigabyte model needs on screen.
import { ApiError, apiUrl, csrfToken, networkError } from "./client";
import type { VersionDetail } from "./types";

export interface UploadProgress {
  loaded: number;
  total: number;
}

export interface UploadHandle {
  promise: Promise<VersionDetail>;
  abort: () => void;
}

export function uploadVersion(
  modelSlug: string,
  form: FormData,
  onProgress: (progress: UploadProgress) => void,
  idempotencyKey?: string,
): UploadHandle {
  const xhr = new XMLHttpRequest();
  const promise = new Promise<VersionDetail>((resolve, reject) => {
    xhr.open("POST", apiUrl(`models/${encodeURIComponent(modelSlug)}/versions/`));
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    // A retried upload (flaky network) must not make a second version.
    if (idempotencyKey) xhr.setRequestHeader("Idempotency-Key", idempotencyKey);
    xhr.withCredentials = true;
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress({ loaded: event.loaded, total: event.total });
    };
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body as VersionDetail);
        return;
      }
      const error = body as { code?: string; message?: string; fields?: Record<string, unknown> } | null;
      reject(
        new ApiError(xhr.status, {
          code: error?.code ?? `http_${xhr.status}`,
          message:
            error?.message ??
            `The upload failed (HTTP ${xhr.status}). Retry; if it keeps failing, check the server's log.`,
          fields: error?.fields ?? {},
        }),
      );
    };
    xhr.onerror = () => reject(networkError());
    xhr.onabort = () => reject(new ApiError(0, { code: "aborted", message: "The upload was cancelled.", fields: {} }));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
