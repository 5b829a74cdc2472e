// src/api/schema.d.ts is generated from the committed API contract; this fails when
// docs/openapi.yaml changed and `npm run gen:api` was not run (then commit both).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const frontend = resolve(__dirname, "../..");

describe("generated API types", () => {
  it("match docs/openapi.yaml", () => {
    const dir = mkdtempSync(join(tmpdir(), "slipway-schema-"));
    try {
      const out = join(dir, "schema.d.ts");
      execFileSync(
        process.execPath,
        [
          join(frontend, "node_modules/openapi-typescript/bin/cli.js"),
          join(frontend, "../docs/openapi.yaml"),
          // as package.json's gen:api: tuples where an array has a fixed length (intervals)
          "--array-length",
          "-o",
          out,
        ],
        { stdio: "pipe" },
      );
      const committed = readFileSync(join(frontend, "src/api/schema.d.ts"), "utf8");
      expect(
        committed === readFileSync(out, "utf8"),
        "src/api/schema.d.ts is stale: run `npm run gen:api` in frontend/ and commit it",
      ).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
