/** zusFetch against a real HTTP server on 127.0.0.1 standing in for Zus, its provider's token route scripted. */
import assert from "node:assert/strict";
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import { TokenProvider, zusFetch } from "../src/index.js";
import { FakeClock, RecordingLogger, ScriptedTransport, tokenAnswer } from "./support.js";

interface Seen {
  bearer: string;
  body: string;
  kept?: string | string[] | undefined;
}

describe("zusFetch", () => {
  const seen: Seen[] = [];
  let url = "";
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const bearer = (request.headers.authorization ?? "").replace(/^Bearer /, "");
      seen.push({ bearer, body: Buffer.concat(chunks).toString(), kept: request.headers["x-kept"] });
      response.writeHead(bearer === "token-0" ? 401 : 200).end(); // Zus refuses the first token
    });
  });
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir/Patient`;
  });
  after(() => server.close());

  function provider(): TokenProvider {
    const clock = new FakeClock();
    const route = new ScriptedTransport((_sent, index) => tokenAnswer(`token-${index}`));
    return new TokenProvider("http://127.0.0.1:9", "billing-service", {
      transport: route,
      clock: clock.clock,
      sleep: clock.sleep,
      logger: new RecordingLogger(),
    });
  }

  it("sends a refused request once more with the next token, body and headers included", async () => {
    seen.length = 0;
    const request = new Request(url, { method: "POST", body: "{}", headers: { "x-kept": "yes" } });
    const answer = await zusFetch(provider(), { logger: new RecordingLogger() })(request);
    assert.equal(answer.status, 200);
    assert.deepEqual(seen, [
      { bearer: "token-0", body: "{}", kept: "yes" },
      { bearer: "token-1", body: "{}", kept: "yes" },
    ]);
  });

  it("returns the 401 when the body was a stream it cannot send again", async () => {
    seen.length = 0;
    const body = new Blob(["streamed"]).stream();
    const init = { method: "POST", body, duplex: "half" } as RequestInit;
    const answer = await zusFetch(provider(), { logger: new RecordingLogger() })(url, init);
    assert.equal(answer.status, 401);
    assert.deepEqual(seen, [{ bearer: "token-0", body: "streamed", kept: undefined }]);
  });
});
