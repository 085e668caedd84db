/**
 * One Node process of the fleet test: when its parent says go, 50 concurrent getToken calls through one
 * TokenProvider (signed as the stack's consumer), then one call to Zus through zusFetch; it sends back
 * how many token-route requests it made and what it got.
 */
import { TokenProvider, zusFetch } from "../src/index.js";
import { stackFromEnvironment, signedAs } from "./stack.js";
import { RecordingTransport } from "./support.js";

const CALLS = 50;
const stack = stackFromEnvironment();
const [name, zusUrl] = process.argv.slice(2);
if (!stack || !name || !zusUrl || !process.send) throw new Error("fleet-worker is started by local-stack.test.js");

const route = new RecordingTransport(signedAs(stack, stack.consumerProfile));
const provider = new TokenProvider(stack.api, name, { transport: route });
process.once("message", async () => {
  const tokens = await Promise.all(Array.from({ length: CALLS }, () => provider.getToken()));
  const answer = await zusFetch(provider)(zusUrl, { headers: { accept: "application/vnd.api+json" } });
  process.send?.({
    calls: tokens.length,
    routeCalls: route.queries.length,
    fingerprints: [...new Set(tokens.map((token) => token.fingerprint))],
    zusStatus: answer.status,
  });
  process.disconnect();
});
process.send({ ready: true });
