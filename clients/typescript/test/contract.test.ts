/**
 * One contract: the request, answer and problem types this package compiles against (src/openapi.ts)
 * are generated from docs/openapi.json, the document the service's routes produce (`make openapi`).
 * A route change there that breaks the client fails this test (regenerate with `npm run generate`),
 * and then the build.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const PACKAGE = fileURLToPath(new URL("../../", import.meta.url));

it("src/openapi.ts is what docs/openapi.json generates", () => {
  const scratch = mkdtempSync(join(tmpdir(), "zus-m2m-openapi-"));
  try {
    const generated = join(scratch, "openapi.ts");
    const script = JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8")).scripts.generate as string;
    const args = script.replace(/^openapi-typescript /, "").replace("src/openapi.ts", generated).split(" ");
    execFileSync(process.execPath, [join(PACKAGE, "node_modules/openapi-typescript/bin/cli.js"), ...args], {
      cwd: PACKAGE,
      stdio: ["ignore", "ignore", "inherit"],
    });
    const committed = readFileSync(join(PACKAGE, "src/openapi.ts"), "utf8");
    assert.ok(
      readFileSync(generated, "utf8") === committed,
      "src/openapi.ts differs from what docs/openapi.json generates: run `npm run generate` in clients/typescript",
    );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});
