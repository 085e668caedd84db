/** Test helpers: in-memory stand-ins of this package's own small interfaces (Transport, Logger, the clock). */
import type { HttpAnswer, Logger, Transport } from "../src/index.js";

export interface Sent {
  method: string;
  path: string;
  query: Record<string, string>;
}

/** A Transport that records what it is asked and answers from a script (or a function of the request). */
export class ScriptedTransport implements Transport {
  readonly sent: Sent[] = [];
  constructor(private readonly answer: (sent: Sent, index: number) => HttpAnswer | Promise<HttpAnswer>) {}

  async request(method: string, path: string, options: { query?: Record<string, string> } = {}): Promise<HttpAnswer> {
    const sent = { method, path, query: { ...(options.query ?? {}) } };
    this.sent.push(sent);
    await new Promise((resolve) => setImmediate(resolve)); // answers arrive later, as over a network
    return this.answer(sent, this.sent.length - 1);
  }
}

/** Wraps a Transport and records each request's query: what a provider asked the real API. */
export class RecordingTransport implements Transport {
  readonly queries: Record<string, string>[] = [];
  constructor(private readonly inner: Transport) {}

  request(method: string, path: string, options: { query?: Record<string, string>; body?: unknown } = {}) {
    this.queries.push({ ...(options.query ?? {}) });
    return this.inner.request(method, path, options);
  }
}

export function tokenAnswer(accessToken: string, expiresIn = 3600): HttpAnswer {
  return json(200, {
    access_token: accessToken,
    token_type: "Bearer",
    expires_in: expiresIn,
    expires_at: Math.floor(Date.now() / 1000) + expiresIn,
  });
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpAnswer {
  const type = status >= 400 ? "application/problem+json" : "application/json";
  return { status, headers: new Headers({ "content-type": type, ...headers }), body: JSON.stringify(body) };
}

export function problem(status: number, type: string, detail: string, headers: Record<string, string> = {}): HttpAnswer {
  return json(status, { type, title: "Problem", status, detail }, headers);
}

/** Monotonic seconds that move only when told; `sleep` moves them and records each wait. */
export class FakeClock {
  now = 1000;
  readonly slept: number[] = [];
  readonly clock = (): number => this.now;
  readonly sleep = async (seconds: number): Promise<void> => {
    this.slept.push(seconds);
    this.now += seconds;
  };
}

/** Keeps every line logged, at every level. */
export class RecordingLogger implements Logger {
  readonly lines: string[] = [];
  debug(message: string): void {
    this.lines.push(`DEBUG ${message}`);
  }
  info(message: string): void {
    this.lines.push(`INFO ${message}`);
  }
  warn(message: string): void {
    this.lines.push(`WARN ${message}`);
  }
  get text(): string {
    return this.lines.join("\n");
  }
}
