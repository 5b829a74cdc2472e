// How wide chart text is drawn, so labels are placed and cut to fit inside the chart. In a
// browser the text is measured on a canvas in the page's own font (fonts differ by machine:
// DejaVu Sans's digits are 0.64 em, Helvetica's 0.56); where nothing can measure (jsdom in the
// unit tests), it is estimated from a generous average width per character.

/** About how wide a character of chart text is, as a share of its font size, where nothing measures. */
export const CHAR_EM = 0.62;

let context: CanvasRenderingContext2D | null | undefined;
let family = "";

function canvas(): CanvasRenderingContext2D | null {
  if (context !== undefined) return context;
  context = null;
  if (typeof document === "undefined" || /jsdom/i.test(navigator.userAgent)) return context;
  try {
    context = document.createElement("canvas").getContext("2d");
    family = getComputedStyle(document.body).fontFamily || "sans-serif";
  } catch {
    context = null;
  }
  return context;
}

/** The width in px of `text` drawn at `px` px and `weight`. */
export function textWidth(text: string, px: number, weight = 400): number {
  const ctx = canvas();
  if (!ctx) return text.length * px * CHAR_EM;
  ctx.font = `${weight} ${px}px ${family}`;
  return ctx.measureText(text).width;
}

/** `text` as drawn within `room` px: whole where it fits, else cut with an ellipsis ("" where
 * not even one character and the ellipsis fit). */
export function fitText(text: string, room: number, px: number, weight = 400): string {
  if (textWidth(text, px, weight) <= room) return text;
  for (let keep = text.length - 1; keep > 0; keep--) {
    const cut = `${text.slice(0, keep).trimEnd()}…`;
    if (textWidth(cut, px, weight) <= room) return cut;
  }
  return "";
}

/** `text` broken at spaces into lines at most `room` px wide (a longer word stays whole). */
export function wrapToWidth(text: string, room: number, px: number, weight = 400): string[] {
  const lines: string[] = [];
  for (const word of text.split(" ")) {
    const last = lines[lines.length - 1];
    if (last !== undefined && textWidth(`${last} ${word}`, px, weight) <= room)
      lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines;
}
