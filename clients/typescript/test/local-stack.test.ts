/**
 * The client against the signed local stack (`python -m zus_local`: the local API checking SigV4 as API
 * Gateway does, the real handlers, moto and the Zus emulator) over HTTP, signing with the AWS SDK's
 * credential chain as the stack's local admin (managing clients) and local consumer (their tokens).
 * Skipped when no stack is described in the environment: `make test` runs them through
 * clients/python/tests/test_typescript_client.py, which starts one.
 */
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { defaultProvider } from "@aws-sdk/credential-provider-node";

import {
  type AppClient,
  ForbiddenError,
  NotFoundError,
  TokenProvider,
  ZusM2MApi,
  fingerprint,
  zusFetch,
} from "../src/index.js";
import { type Stack, mintedLongAgo, signedAs, stackFromEnvironment } from "./stack.js";
import { RecordingLogger, RecordingTransport } from "./support.js";

const stack = stackFromEnvironment();
const WORKERS = 8;
export const FLEET_CLIENT = "ts-fleet";

interface WorkerResult {
  calls: number;
  routeCalls: number;
  fingerprints: string[];
  zusStatus: number;
}

describe("against the local stack", { skip: stack ? false : "no local stack (ZUS_M2M_TEST_API_URL unset)" }, () => {
  const local = stack as Stack;
  let admin: ZusM2MApi;
  const created: string[] = [];

  before(() => {
    admin = new ZusM2MApi(local.api, { transport: signedAs(local, local.adminProfile) });
  });
  after(async () => {
    for (const name of created) await admin.deleteClient(name);
  });

  async function managed(name: string): Promise<AppClient> {
    const record = await admin.createClient(name, { consumers: [local.consumerArn] });
    created.push(name);
    return record;
  }

  function appClientUrl(record: AppClient): string {
    return `${local.zus}/auth/app-clients/${record.appClientId}`;
  }

  it(`${WORKERS} Node processes x 50 getToken calls cost one token-route call each`, async () => {
    const record = await managed(FLEET_CLIENT);
    const worker = fileURLToPath(new URL("./fleet-worker.js", import.meta.url));
    const children = Array.from({ length: WORKERS }, () =>
      fork(worker, [FLEET_CLIENT, appClientUrl(record)], { stdio: "inherit" }),
    );
    try {
      const ready: Promise<unknown>[] = [];
      const results: Promise<WorkerResult>[] = [];
      for (const child of children) {
        ready.push(new Promise((resolve) => child.once("message", resolve)));
        results.push(
          new Promise((resolve, reject) => {
            child.once("exit", (code) => reject(new Error(`a worker exited with ${code} before answering`)));
            child.on("message", (message: WorkerResult | { ready: true }) => {
              if ("routeCalls" in message) resolve(message);
            });
          }),
        );
      }
      await Promise.all(ready);
      for (const child of children) child.send("go"); // all of them loaded: they start together
      const answers = await Promise.all(results);
      const routeCalls = answers.reduce((sum, answer) => sum + answer.routeCalls, 0);
      console.log(
        `${WORKERS} Node worker processes x ${answers[0]?.calls} getToken calls: ${routeCalls} token-route ` +
          `call(s) (${answers.map((answer) => answer.routeCalls).join(", ")} per process)`,
      );
      assert.deepEqual(answers.map((answer) => answer.routeCalls), Array(WORKERS).fill(1));
      assert.deepEqual(new Set(answers.flatMap((answer) => answer.fingerprints)).size, 1); // the service's cached token
      assert.deepEqual(answers.map((answer) => answer.zusStatus), Array(WORKERS).fill(200));
    } finally {
      for (const child of children) child.kill();
    }
  });

  it("a token Zus refuses is reported, replaced for the fleet and the request sent once more", async () => {
    await managed("ts-refused");
    const route = new RecordingTransport(signedAs(local, local.consumerProfile));
    const provider = new TokenProvider(local.api, "ts-refused", { transport: route });
    const first = await provider.getToken();
    await mintedLongAgo(local, "ts-refused");
    // A Zus resource that refuses the first token it sees (revoked at Zus), served over real HTTP.
    const seen: string[] = [];
    const zus = await listen(
      createServer((request, response) => {
        const bearer = (request.headers.authorization ?? "").replace(/^Bearer /, "");
        seen.push(fingerprint(bearer));
        response.writeHead(bearer === first.accessToken ? 401 : 200, { "content-type": "application/json" });
        request.on("data", () => undefined).on("end", () => response.end(JSON.stringify({ body: "ok" })));
      }),
    );
    try {
      const answer = await zusFetch(provider)(zus.url, { method: "POST", body: '{"resend": "me"}' });
      assert.equal(answer.status, 200);
      const second = await provider.getToken();
      assert.notEqual(second.fingerprint, first.fingerprint);
      assert.deepEqual(seen, [first.fingerprint, second.fingerprint]);
      assert.deepEqual(route.queries.map((query) => query["refused"]), [undefined, first.fingerprint]);
      // Another process reporting the same token gets the replacement, not a third token.
      const other = new TokenProvider(local.api, "ts-refused", { transport: signedAs(local, local.consumerProfile) });
      other.reportRefused(first.accessToken);
      assert.equal((await other.getToken()).fingerprint, second.fingerprint);
    } finally {
      zus.server.close();
    }
  });

  it("API errors are typed and carry the problem's type, API Gateway's refusals their reason", async () => {
    const missing = await admin.getClient("ts-nobody").catch((error: unknown) => error);
    assert.ok(missing instanceof NotFoundError, String(missing));
    assert.equal(missing.status, 404);
    assert.match(missing.problemType, /^urn:zus-m2m:problem:[a-z-]+$/);
    assert.match(missing.message, /ts-nobody/);

    const consumer = new TokenProvider(local.api, "ts-nobody", { transport: signedAs(local, local.consumerProfile) });
    const forbidden = await consumer.getToken().catch((error: unknown) => error);
    assert.ok(forbidden instanceof ForbiddenError, String(forbidden));
    assert.equal(forbidden.status, 403);

    const unsigned = new ZusM2MApi(local.api, {
      region: "us-east-1",
      credentials: { accessKeyId: "AKIAUNKNOWN0000000000", secretAccessKey: "not-a-key-the-stack-knows" },
    });
    const refused = await unsigned.getClient("ts-nobody").catch((error: unknown) => error);
    assert.ok(refused instanceof ForbiddenError, String(refused));
    assert.equal(refused.problemType, "about:blank");
  });

  it("no token or credential in the debug log", async () => {
    await managed("ts-logs");
    const logger = new RecordingLogger();
    const transport = signedAs(local, local.consumerProfile, logger);
    const provider = new TokenProvider(local.api, "ts-logs", { transport, logger });
    const held = await provider.getToken();
    provider.reportRefused(held.accessToken);
    const replaced = await provider.getToken();
    assert.match(logger.text, /GET \/app-clients\/ts-logs\/token\?minTtl=60 -> 200/);
    assert.match(logger.text, new RegExp(`refused=${held.fingerprint} -> 200`));
    const credentials = await defaultProvider({ profile: local.consumerProfile })();
    for (const secret of [held.accessToken, replaced.accessToken, credentials.accessKeyId, credentials.secretAccessKey]) {
      assert.ok(!logger.text.includes(secret), "a secret is in the log");
    }
  });
});

async function listen(server: Server): Promise<{ server: Server; url: string }> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/resource` };
}
