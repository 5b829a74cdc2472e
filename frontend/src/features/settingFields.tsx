// Forms built from the server's specs of settings (OptionSpec: a serving-target kind's options
// and credentials, GET /targets/kinds/; a policy kind's params, GET /policies/kinds/): each field
// labelled, helped and checked as the server's spec checks it, so the form and the server can't
// disagree.
import { type ReactNode } from "react";
import type { OptionSpec } from "../api/deployments";

export type Where = "options" | "credentials";
export type SettingValue = string | boolean;

/** "image_repository" -> "Image repository", "metrics_url" -> "Metrics URL": the label of a
 * setting the server names by its key. */
export function settingLabel(key: string): string {
  const words = key.replace(/_/g, " ").replace(/\b(url|id|tls|http|https)\b/g, (word) => word.toUpperCase());
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function rangeText(spec: OptionSpec): string {
  const { minimum: low, maximum: high } = spec;
  if (low != null && high != null) return ` from ${low} to ${high}`;
  if (low != null) return ` of ${low} or more`;
  return high != null ? ` of ${high} or less` : "";
}

export const eg = (spec: OptionSpec) => (spec.example ? `, e.g. ${spec.example}` : "");
const ANY_URL = /^https?:\/\/[^/\s?#]+(\/\S*)?$/i;

/** Lines of "name: value" (a text map or HTTP headers) as an object; an error for a line without a name. */
function readPairs(text: string, label: string, headers: boolean): { value?: Record<string, string>; error?: string } {
  const value: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    const name = at > 0 ? line.slice(0, at).trim() : "";
    if (!name) {
      return {
        error: `Write each entry of ${label} on its own line as name: value${headers ? ", e.g. Authorization: Bearer …" : ""}.`,
      };
    }
    value[name] = line.slice(at + 1).trim();
  }
  return { value };
}

/**
 * A setting as the form holds it, checked as the server's spec checks it: `value` is what to
 * send (undefined: leave it out, so the driver's default applies), `error` a sentence.
 */
export function readSetting(
  spec: OptionSpec,
  raw: SettingValue | undefined,
  where: Where,
): { value?: unknown; error?: string } {
  const label = settingLabel(spec.key);
  if (spec.type === "boolean") {
    const checked = raw === true;
    return checked === (spec.default === true) && !spec.required ? {} : { value: checked };
  }
  const text = typeof raw === "string" ? raw : "";
  if (!text.trim()) {
    return spec.required ? { error: `Fill in ${label.toLowerCase()}: ${spec.help}${eg(spec)}.` } : {};
  }
  switch (spec.type) {
    case "url":
      return ANY_URL.test(text.trim())
        ? { value: text.trim() }
        : { error: `${label} must be an http:// or https:// URL${eg(spec)}.` };
    case "integer":
    case "number": {
      const whole = spec.type === "integer";
      const n = Number(text.trim());
      const fits =
        (whole ? /^-?\d+$/.test(text.trim()) : Number.isFinite(n)) &&
        (spec.minimum == null || n >= spec.minimum) &&
        (spec.maximum == null || n <= spec.maximum);
      return fits
        ? { value: n }
        : { error: `${label} must be ${whole ? "a whole number" : "a number"}${rangeText(spec)}.` };
    }
    case "string_list": {
      const items = text
        .split(/[,\n]/)
        .map((item) => item.trim())
        .filter(Boolean);
      const wrong = items.filter((item) => spec.choices.length && !spec.choices.includes(item));
      if (!items.length) return { error: `${label} must list one or more values, separated by commas.` };
      return wrong.length
        ? { error: `${label} takes only ${spec.choices.join(", ")}; ${wrong.join(", ")} is not one of them.` }
        : { value: items };
    }
    case "path_list": {
      const paths = text
        .split("\n")
        .map((line) => line.trim())
        .filter(Boolean);
      const wrong = paths.find((path) => !path.startsWith("/") || /[:"\\]/.test(path));
      return wrong
        ? { error: `${label}: '${wrong}' must be an absolute directory without ':', quotes or backslashes.` }
        : { value: paths };
    }
    case "text_map":
    case "headers": {
      const read = readPairs(text, label.toLowerCase(), spec.type === "headers");
      if (read.error || !read.value) return read;
      const secret = Object.keys(read.value).filter((name) => spec.secret_keys.includes(name));
      if (secret.length) {
        return {
          error: `${secret.join(", ")} is a secret: give it with the credentials below, not in ${label.toLowerCase()}.`,
        };
      }
      return { value: read.value };
    }
    default:
      // string: kept as typed when it is a secret, trimmed otherwise (as the server does)
      if (spec.choices.length && !spec.choices.includes(text.trim())) {
        return { error: `${label} must be one of ${spec.choices.join(", ")}.` };
      }
      return { value: where === "credentials" ? text : text.trim() };
  }
}

export function RequiredMark() {
  return (
    <span className="text-bad" aria-hidden="true">
      {" "}
      *
    </span>
  );
}

/** One field: its label tied to the input, help and error tied to it by aria-describedby. */
export function FieldShell({
  id,
  label,
  required,
  help,
  error,
  children,
}: {
  id: string;
  label: string;
  required?: boolean;
  help?: string | undefined;
  error?: string | undefined;
  children: (describedBy: string | undefined, invalid: boolean) => ReactNode;
}) {
  const describedBy = [error ? `${id}-err` : "", help ? `${id}-help` : ""].filter(Boolean).join(" ") || undefined;
  return (
    <div className={`field${error ? " has-error" : ""}`}>
      <label htmlFor={id}>
        {label}
        {required ? <RequiredMark /> : null}
      </label>
      {children(describedBy, Boolean(error))}
      {error ? (
        <p className="field-error" id={`${id}-err`}>
          {error}
        </p>
      ) : null}
      {help ? (
        <p className="help" id={`${id}-help`}>
          {help}
        </p>
      ) : null}
    </div>
  );
}

export function settingHelp(spec: OptionSpec, where: Where): string {
  const sentence = spec.help.charAt(0).toUpperCase() + spec.help.slice(1);
  const parts = [sentence.endsWith(".") ? sentence : `${sentence}.`];
  if (spec.type === "path_list") parts.push("One directory a line.");
  if (spec.type === "string_list") parts.push("Separated by commas.");
  if (spec.type === "text_map" || spec.type === "headers") parts.push("One name: value a line.");
  if (spec.type === "integer" || spec.type === "number") {
    const range = rangeText(spec);
    if (range) parts.push(`A ${spec.type === "integer" ? "whole number" : "number"}${range}.`);
  }
  if (spec.default != null && spec.type !== "boolean") parts.push(`Empty: ${String(spec.default)}.`);
  if (where === "credentials") parts.push("Encrypted and never shown again.");
  return parts.join(" ");
}

export function SettingField({
  baseId,
  spec,
  where,
  value,
  error,
  onChange,
}: {
  baseId: string;
  spec: OptionSpec;
  where: Where;
  value: SettingValue | undefined;
  error: string | undefined;
  onChange: (value: SettingValue) => void;
}) {
  const id = `${baseId}-${where}-${spec.key}`;
  const label = settingLabel(spec.key);
  const help = settingHelp(spec, where);
  if (spec.type === "boolean") {
    return (
      <div className={`field${error ? " has-error" : ""}`}>
        <label className="checkbox" htmlFor={id}>
          <input
            id={id}
            type="checkbox"
            checked={value === true}
            onChange={(e) => onChange(e.target.checked)}
            aria-describedby={[error ? `${id}-err` : "", `${id}-help`].filter(Boolean).join(" ")}
          />
          {label}
        </label>
        {error ? (
          <p className="field-error" id={`${id}-err`}>
            {error}
          </p>
        ) : null}
        <p className="help" id={`${id}-help`}>
          {help}
        </p>
      </div>
    );
  }
  const text = typeof value === "string" ? value : "";
  const placeholder = spec.default != null ? String(spec.default) : spec.example || undefined;
  return (
    <FieldShell id={id} label={label} required={spec.required} help={help} error={error}>
      {(describedBy, invalid) => {
        const common = {
          id,
          className: "input",
          required: spec.required,
          "aria-required": spec.required || undefined,
          "aria-invalid": invalid || undefined,
          "aria-describedby": describedBy,
        };
        if (spec.choices.length && spec.type !== "string_list") {
          return (
            <select {...common} value={text} onChange={(e) => onChange(e.target.value)}>
              <option value="">
                {spec.required
                  ? "Choose one"
                  : `The default${spec.default != null ? ` (${String(spec.default)})` : ""}`}
              </option>
              {spec.choices.map((choice) => (
                <option key={choice} value={choice}>
                  {choice}
                </option>
              ))}
            </select>
          );
        }
        if (spec.type === "path_list" || spec.type === "text_map" || spec.type === "headers") {
          return (
            <textarea
              {...common}
              rows={2}
              spellCheck={false}
              placeholder={placeholder}
              value={text}
              onChange={(e) => onChange(e.target.value)}
            />
          );
        }
        const numeric = spec.type === "integer" || spec.type === "number";
        return (
          <input
            {...common}
            type={where === "credentials" ? "password" : spec.type === "url" ? "url" : "text"}
            inputMode={numeric ? (spec.type === "integer" ? "numeric" : "decimal") : undefined}
            autoComplete={where === "credentials" ? "new-password" : "off"}
            spellCheck={false}
            placeholder={placeholder}
            value={text}
            onChange={(e) => onChange(e.target.value)}
          />
        );
      }}
    </FieldShell>
  );
}
