/** TokenProvider's logic against a scripted transport (no network), on a fake clock. */
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { describe, it } from "node:test";

import {
  NotFoundError,
  ThrottledError,
  TokenProvider,
  TokenRefusedError,
  UnavailableError,
  fingerprint,
} from "../src/index.js";
import { FakeClock, RecordingLogger, ScriptedTransport, problem, tokenAnswer } from "./support.js";

const API = "http://127.0.0.1:9";

function provider(transport: ScriptedTransport, clock: FakeClock, options: Record<string, unknown> = {}) {
  return new TokenProvider(API, "billing-service", {
    transport,
    clock: clock.clock,
    sleep: clock.sleep,
    logger: new RecordingLogger(),
    ...options,
  });
}

describe("TokenProvider", () => {
  it("fetches once for a hundred concurrent calls (single flight) and serves the cache after", async () => {
    const clock = new FakeClock();
    const route = new ScriptedTransport((_sent, index) => tokenAnswer(`token-${index}`));
    const tokens = provider(route, clock);
    const got = await Promise.all(Array.from({ length: 100 }, () => tokens.getToken()));
    assert.deepEqual(new Set(got.map((token) => token.accessToken)), new Set(["token-0"]));
    await tokens.getToken();
    assert.equal(route.sent.length, 1);
    assert.equal(route.sent[0]?.path, "/app-clients/billing-service/token");
  });

  it("caps the margin at half the token's lifetime and refreshes ahead once", async () => {
    const clock = new FakeClock();
    const route = new ScriptedTransport((_sent, index) => tokenAnswer(`token-${index}`, 90));
    const tokens = provider(route, clock, { minTtl: 10 });
    assert.equal((await tokens.getToken()).accessToken, "token-0");
    clock.now += 40; // 50 s left: above the window of max(10, 90 / 2) = 45 s
    assert.equal((await tokens.getToken()).accessToken, "token-0");
    clock.now += 10; // 40 s left: refreshed ahead
    const during = [tokens.getToken(), tokens.getToken(), tokens.getToken()];
    assert.deepEqual((await Promise.all(during)).map((token) => token.accessToken), ["token-1", "token-0", "token-0"]);
    assert.deepEqual(route.sent.map((sent) => sent.query["minTtl"]), ["10", "45"]);
  });

  it("makes one route call per token lifetime whatever the service's refresh margin", async () => {
    for (const serviceMargin of [120, 300, 600]) {
      const clock = new FakeClock();
      let minted = 0;
      let current = { name: "", expiresAt: 0 };
      const mint = (): void => {
        minted += 1;
        current = { name: `token-${minted}`, expiresAt: clock.now + 3600 };
      };
      const answered: string[] = [];
      // The service: one token for every caller, renewed by the call that finds it inside its margin (that
      // call still answers it), replaced at once for a minTtl it no longer has; expires_in in whole seconds,
      // and a call takes 0.2 s.
      const route = new ScriptedTransport((sent) => {
        clock.now += 0.1;
        if (current.expiresAt - clock.now < Number(sent.query["minTtl"])) mint();
        const answer = current;
        if (answer.expiresAt - clock.now < serviceMargin) mint();
        answered.push(answer.name);
        const expiresIn = Math.floor(answer.expiresAt - clock.now);
        clock.now += 0.1;
        return tokenAnswer(answer.name, expiresIn);
      });
      const tokens = provider(route, clock); // the defaults: a window of 60 + 240 s
      const hours = 5;
      const started = clock.now;
      while (clock.now - started < hours * 3600) {
        await tokens.getToken(); // ten calls a second
        clock.now += 0.1;
      }
      // Each call answers a token the process did not hold yet: none is asked for again 10 s later.
      assert.equal(new Set(answered).size, answered.length, `margin ${serviceMargin}: ${answered.join(" ")}`);
      assert.ok(route.sent.length <= 1 + (hours * 3600) / (3600 - 300 - 1), `margin ${serviceMargin}`);
    }
  });

  it("keeps the current token when refreshing ahead fails", async () => {
    const clock = new FakeClock();
    const route = new ScriptedTransport((_sent, index) =>
      index === 0 ? tokenAnswer("token-0", 600) : problem(500, "urn:zus-m2m:problem:internal", "broken"),
    );
    const tokens = provider(route, clock);
    await tokens.getToken();
    clock.now += 400; // 200 s left, under 60 + 240
    assert.equal((await tokens.getToken()).accessToken, "token-0");
    assert.equal((await tokens.getToken()).accessToken, "token-0"); // no second attempt within 10 s
    assert.equal(route.sent.length, 2);
  });

  it("waits out Retry-After on 429 and 503 within maxWait, then gives up with the typed error", async () => {
    const clock = new FakeClock();
    const answers = [
      problem(429, "urn:zus-m2m:problem:token-budget-exhausted", "budget spent", { "retry-after": "3" }),
      problem(503, "urn:zus-m2m:problem:zus-unavailable", "Zus is down", { "retry-after": "5" }),
      tokenAnswer("token-2"),
    ];
    const route = new ScriptedTransport((_sent, index) => answers[index] ?? tokenAnswer("late"));
    assert.equal((await provider(route, clock).getToken()).accessToken, "token-2");
    assert.deepEqual(clock.slept, [3, 5]);

    const refusing = new ScriptedTransport(() =>
      problem(429, "urn:zus-m2m:problem:token-budget-exhausted", "budget spent", { "retry-after": "30" }),
    );
    const error = await provider(refusing, clock).getToken().catch((caught: unknown) => caught);
    assert.ok(error instanceof ThrottledError, String(error));
    assert.equal(error.problemType, "urn:zus-m2m:problem:token-budget-exhausted");
    assert.equal(error.retryAfter, 30);
    assert.equal(refusing.sent.length, 1);
  });

  it("throws typed errors carrying the problem's type, to every waiting caller", async () => {
    const clock = new FakeClock();
    const route = new ScriptedTransport(() =>
      problem(404, "urn:zus-m2m:problem:not-found", "no managed app client named 'billing-service'"),
    );
    const tokens = provider(route, clock);
    const outcomes = await Promise.allSettled([tokens.getToken(), tokens.getToken()]);
    for (const outcome of outcomes) {
      assert.equal(outcome.status, "rejected");
      const error: unknown = outcome.reason;
      assert.ok(error instanceof NotFoundError);
      assert.equal(error.status, 404);
      assert.equal(error.problemType, "urn:zus-m2m:problem:not-found");
      assert.equal(error.message, "404 Problem: no managed app client named 'billing-service'");
    }
    assert.equal(route.sent.length, 1);
    const unknown = new ScriptedTransport(() => ({ status: 502, headers: new Headers(), body: "<html>secret</html>" }));
    const error = await provider(unknown, clock, { maxWait: 0 }).getToken().catch((caught: unknown) => caught);
    assert.ok(error instanceof UnavailableError);
    assert.equal(error.problemType, "about:blank");
    assert.doesNotMatch(error.message, /secret/);
  });

  it("names a refused token once, and backs off when the replacement is refused too", async () => {
    const clock = new FakeClock();
    const route = new ScriptedTransport((_sent, index) => tokenAnswer(`token-${index}`));
    const logger = new RecordingLogger();
    const tokens = provider(route, clock, { logger });
    const first = await tokens.getToken();
    tokens.reportRefused(first.accessToken);
    tokens.reportRefused(first.accessToken); // counts once
    const second = await tokens.getToken();
    assert.equal(second.accessToken, "token-1");
    assert.equal(route.sent[1]?.query["refused"], fingerprint("token-0"));
    tokens.reportRefused(first.accessToken); // already replaced: nothing happens
    assert.equal((await tokens.getToken()).accessToken, "token-1");

    tokens.reportRefused(second.accessToken); // the replacement refused too: back off 1-2 s
    const error = await tokens.getToken().catch((caught: unknown) => caught);
    assert.ok(error instanceof TokenRefusedError, String(error));
    assert.ok(error.retryAfter >= 1 && error.retryAfter <= 2, String(error.retryAfter));
    assert.equal(route.sent.length, 2);
    clock.now += error.retryAfter;
    assert.equal((await tokens.getToken()).accessToken, "token-2");
    assert.equal(route.sent[2]?.query["refused"], fingerprint("token-1"));
    for (const token of ["token-0", "token-1", "token-2"]) assert.doesNotMatch(logger.text, new RegExp(token));
  });

  it("never shows the token when the AccessToken is logged", async () => {
    const route = new ScriptedTransport(() => tokenAnswer("eyJsecret-token-value"));
    const token = await provider(route, new FakeClock()).getToken();
    for (const shown of [inspect(token), JSON.stringify(token), String(token), `${Object.keys(token)}`]) {
      assert.doesNotMatch(shown, /secret-token-value/);
    }
    assert.match(inspect(token), new RegExp(token.fingerprint));
  });

  it("refuses bad options and names", () => {
    const transport = new ScriptedTransport(() => tokenAnswer("x"));
    assert.throws(() => new TokenProvider(API, "Billing", { transport }), /a client name is 1-64 characters/);
    assert.throws(() => new TokenProvider(API, "a", { transport, minTtl: 2000, refreshMargin: 2000 }), /at most 3000/);
  });
});
