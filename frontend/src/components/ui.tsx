import { useEffect, useId, useRef, useState, type ReactNode } from "react";
import { createPortal } from "react-dom";
import type { ApiError } from "../api/client";

/** The API's sentence, in an alert; `action` offers the way out (retry, sign in ...). */
export function ErrorMessage({
  error,
  title,
  action,
}: {
  error: ApiError | Error | string;
  title?: string;
  action?: ReactNode;
}) {
  const message = typeof error === "string" ? error : error.message;
  return (
    <div className="alert alert-error" role="alert">
      <span className="alert-icon" aria-hidden="true">
        ✕
      </span>
      <div>
        {title ? <strong className="alert-title">{title}</strong> : null}
        <p>{message}</p>
        {action ? <div className="alert-action">{action}</div> : null}
      </div>
    </div>
  );
}

export function Notice({
  kind = "info",
  title,
  children,
}: {
  kind?: "info" | "warn" | "ok";
  title?: string;
  children: ReactNode;
}) {
  const icon = kind === "warn" ? "!" : kind === "ok" ? "✓" : "i";
  return (
    <div className={`alert alert-${kind}`} role={kind === "warn" ? "status" : undefined}>
      <span className="alert-icon" aria-hidden="true">
        {icon}
      </span>
      <div>
        {title ? <strong className="alert-title">{title}</strong> : null}
        <div>{children}</div>
      </div>
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <p className="empty-title">{title}</p>
      {children ? <div className="empty-body">{children}</div> : null}
    </div>
  );
}

/** A placeholder of fixed height while data loads, so nothing jumps when it arrives. */
export function Loading({ label = "Loading…", height = 120 }: { label?: string; height?: number }) {
  return (
    <div className="loading" style={{ minHeight: height }} role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}

export function PageHeader({
  title,
  subtitle,
  actions,
}: {
  title: ReactNode;
  subtitle?: ReactNode;
  actions?: ReactNode;
}) {
  return (
    <header className="page-header">
      <div>
        <h1>{title}</h1>
        {subtitle ? <p className="subtitle">{subtitle}</p> : null}
      </div>
      {actions ? <div className="page-actions">{actions}</div> : null}
    </header>
  );
}

export function Section({
  id,
  title,
  actions,
  children,
  description,
}: {
  id?: string;
  title: string;
  actions?: ReactNode;
  children: ReactNode;
  description?: ReactNode;
}) {
  return (
    <section className="card" id={id} aria-labelledby={id ? `${id}-title` : undefined}>
      <div className="card-header">
        <h2 id={id ? `${id}-title` : undefined}>{title}</h2>
        {actions ? <div className="card-actions">{actions}</div> : null}
      </div>
      {description ? <p className="card-description">{description}</p> : null}
      {children}
    </section>
  );
}

const STATUS_ICON: Record<string, string> = {
  ok: "✓",
  bad: "✕",
  warn: "!",
  busy: "◌",
  idle: "·",
};

/** Status as colour AND a symbol AND words. */
export function Badge({
  tone,
  children,
  title,
}: {
  tone: "ok" | "bad" | "warn" | "busy" | "idle" | "info";
  children: ReactNode;
  title?: string;
}) {
  return (
    <span className={`badge badge-${tone}`} title={title}>
      <span aria-hidden="true" className="badge-icon">
        {STATUS_ICON[tone] ?? "•"}
      </span>
      {children}
    </span>
  );
}

const VERSION_TONE: Record<string, "ok" | "bad" | "warn" | "busy" | "idle" | "info"> = {
  received: "busy",
  processing: "busy",
  ready: "info",
  failed: "bad",
  approved: "ok",
  rejected: "bad",
  revoked: "warn",
  pending: "idle",
  queued: "idle",
  running: "busy",
  succeeded: "ok",
  cancelled: "idle",
  live: "ok",
  pushing: "busy",
  undeploying: "busy",
  rolled_back: "warn",
  retired: "idle",
  online: "ok",
  stale: "warn",
  stopped: "idle",
};

const LABELS: Record<string, string> = {
  ready: "Ready for review",
  pending: "Waiting",
  rolled_back: "Rolled back",
};

export function StatusBadge({ status, label }: { status: string; label?: string }) {
  const text = label ?? LABELS[status] ?? status.charAt(0).toUpperCase() + status.slice(1).replace(/_/g, " ");
  return <Badge tone={VERSION_TONE[status] ?? "idle"}>{text}</Badge>;
}

export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [copied, setCopied] = useState<"" | "yes" | "no">("");
  useEffect(() => {
    if (!copied) return;
    const timer = setTimeout(() => setCopied(""), 2500);
    return () => clearTimeout(timer);
  }, [copied]);
  return (
    <button
      type="button"
      className="button"
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setCopied("yes");
        } catch {
          setCopied("no");
        }
      }}
    >
      {copied === "yes" ? "Copied ✓" : copied === "no" ? "Select and copy it by hand" : label}
    </button>
  );
}

/** A secret the server shows once (a token, an invitation code): each value with a copy button,
 * what to do with it, and the button that dismisses it. */
export function ShownOnce({
  title,
  children,
  values,
  doneLabel,
  onDone,
}: {
  title: ReactNode;
  children: ReactNode;
  values: { label: string; text: string; copyLabel: string }[];
  doneLabel: string;
  onDone: () => void;
}) {
  return (
    <div className="alert alert-warn token-created" role="status">
      <span className="alert-icon" aria-hidden="true">
        !
      </span>
      <div>
        <strong className="alert-title">{title}</strong>
        <p>{children}</p>
        {values.map((value) => (
          <div className="token-value" key={value.label}>
            <code aria-label={value.label}>{value.text}</code>
            <CopyButton text={value.text} label={value.copyLabel} />
          </div>
        ))}
        <button type="button" className="button button-quiet button-small" onClick={onDone}>
          {doneLabel}
        </button>
      </div>
    </div>
  );
}

/** Ask before a destructive action; the confirmation is a second button press. */
export function ConfirmButton({
  onConfirm,
  children,
  confirmLabel,
  className = "button",
  disabled,
}: {
  onConfirm: () => void | Promise<void>;
  children: ReactNode;
  confirmLabel: string;
  className?: string;
  disabled?: boolean;
}) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const ref = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (asking) ref.current?.focus();
  }, [asking]);
  if (!asking) {
    return (
      <button type="button" className={className} disabled={disabled} onClick={() => setAsking(true)}>
        {children}
      </button>
    );
  }
  return (
    <span className="confirm">
      <button
        ref={ref}
        type="button"
        className="button button-danger"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          try {
            await onConfirm();
          } finally {
            setBusy(false);
            setAsking(false);
          }
        }}
      >
        {busy ? "Working…" : confirmLabel}
      </button>
      <button type="button" className="button button-quiet" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

/**
 * Ask before a big action, saying what it will do: a modal (the native <dialog>) whose body is
 * the action's consequences and whose confirm button names the action. Render it only while
 * asking. Focus starts on Cancel, the safe choice, and goes back to what opened the dialog;
 * Escape cancels. Without `confirmLabel` it only explains (a Close button), for an action the
 * server would refuse. `onConfirm` runs with the buttons disabled, then the dialog closes
 * whatever happened: the caller shows a failure where the action was started.
 */
export function ConfirmDialog({
  title,
  children,
  confirmLabel,
  busyLabel = "Working…",
  tone = "danger",
  confirmDisabled = false,
  onConfirm,
  onClose,
}: {
  title: string;
  children: ReactNode;
  confirmLabel?: string;
  busyLabel?: string;
  tone?: "danger" | "primary";
  confirmDisabled?: boolean;
  onConfirm?: () => void | Promise<void>;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  const [busy, setBusy] = useState(false);
  const titleId = useId();
  const bodyId = useId();
  useEffect(() => {
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    const dialog = ref.current;
    // showModal makes the rest of the page inert; test DOMs without it get an open dialog.
    if (dialog && typeof dialog.showModal === "function") {
      if (!dialog.open) dialog.showModal();
    } else dialog?.setAttribute("open", "");
    cancel.current?.focus();
    return () => {
      if (dialog?.open && typeof dialog.close === "function") dialog.close();
      if (opener?.isConnected) opener.focus();
    };
  }, []);
  const confirm = async () => {
    setBusy(true);
    try {
      await onConfirm?.();
    } finally {
      setBusy(false);
      onClose();
    }
  };
  return createPortal(
    <dialog
      ref={ref}
      className="confirm-dialog"
      aria-labelledby={titleId}
      aria-describedby={bodyId}
      aria-modal="true"
      onKeyDown={(e) => {
        if (e.key !== "Escape") return;
        e.preventDefault();
        e.stopPropagation();
        if (!busy) onClose();
      }}
      onCancel={(e) => {
        // The browser's own close request (Escape, a back gesture): React state decides.
        e.preventDefault();
        if (!busy) onClose();
      }}
    >
      <h2 id={titleId} className="confirm-dialog-title">
        {title}
      </h2>
      <div id={bodyId} className="confirm-dialog-body">
        {children}
      </div>
      <div className="confirm-dialog-actions">
        <button ref={cancel} type="button" className="button" disabled={busy} onClick={onClose}>
          {confirmLabel ? "Cancel" : "Close"}
        </button>
        {confirmLabel ? (
          <button
            type="button"
            className={`button ${tone === "danger" ? "button-danger" : "button-primary"}`}
            disabled={busy || confirmDisabled}
            onClick={() => void confirm()}
          >
            {busy ? busyLabel : confirmLabel}
          </button>
        ) : null}
      </div>
    </dialog>,
    document.body,
  );
}

export function KeyValues({ items }: { items: [ReactNode, ReactNode][] }) {
  return (
    <dl className="kv">
      {items.map(([key, value], index) => (
        <div key={index} className="kv-row">
          <dt>{key}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

export function ProgressBar({ value, label }: { value: number; label: string }) {
  const percent = Math.max(0, Math.min(100, Math.round(value * 100)));
  return (
    <div
      className="progress"
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={percent}
      aria-label={label}
    >
      <div className="progress-fill" style={{ width: `${percent}%` }} />
    </div>
  );
}
