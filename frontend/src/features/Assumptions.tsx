// What Slipway assumed about a model's inputs, each with the declaration that would replace the
// assumption. The engine writes the declaration into the sentence as JSON
// (`declare {"dims": {"height": {"typical": 640}}} to set them`); it is shown as code so that it
// reads as what to type into the upload's input declarations.
import { Fragment } from "react";

export interface TextPart {
  text: string;
  code: boolean;
}

/** A sentence split into prose and the JSON objects in it (balanced braces opening with `{"`). */
export function splitDeclarations(sentence: string): TextPart[] {
  const parts: TextPart[] = [];
  let rest = 0;
  let index = sentence.indexOf('{"');
  while (index !== -1) {
    let depth = 0;
    let end = -1;
    for (let i = index; i < sentence.length; i += 1) {
      if (sentence[i] === "{") depth += 1;
      else if (sentence[i] === "}") {
        depth -= 1;
        if (depth === 0) {
          end = i + 1;
          break;
        }
      }
    }
    if (end === -1) break; // unbalanced: leave the rest as prose
    if (index > rest) parts.push({ text: sentence.slice(rest, index), code: false });
    parts.push({ text: sentence.slice(index, end), code: true });
    rest = end;
    index = sentence.indexOf('{"', end);
  }
  if (rest < sentence.length) parts.push({ text: sentence.slice(rest), code: false });
  return parts;
}

export function AssumptionList({ items, label }: { items: string[]; label: string }) {
  if (!items.length) return null;
  return (
    <ul className="notes-list assumptions" aria-label={label}>
      {items.map((item) => (
        <li key={item}>
          {splitDeclarations(item).map((part, i) =>
            part.code ? (
              <code key={i} className="mono">
                {part.text}
              </code>
            ) : (
              <Fragment key={i}>{part.text}</Fragment>
            ),
          )}
        </li>
      ))}
    </ul>
  );
}
