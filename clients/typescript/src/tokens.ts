/**
 * `TokenProvider`: a process's Zus access token for one managed client, fetched from zus-m2m; the same
 * behaviour as the Python client's `TokenProvider`.
 *
 * The token is kept in the process and handed out while it has at least `minTtl` seconds left. Once it
 * has less than `minTtl + margin` left, the first caller to notice fetches the next one while every
 * other caller keeps using the current one; when there is no usable token, one call fetches and the
 * others await that fetch (single flight). Lifetimes are timed on the monotonic clock from the answer's
 * `expires_in`. 429 and 503 answers (and no answer) are retried after their Retry-After within `maxWait`.
 *
 * The margin is `refreshMargin` (default 240 s) but at most half the token's lifetime (the longest
 * `expires_in` seen), as the service's own; the route is asked for no more than a token of that lifetime
 * can have left, so short-lived tokens are neither refused (422) nor fetched on every call. A fetch made
 * while the held token is inside that window asks for more than the held token can have left (its
 * `expires_in` is whole seconds, and the request took time): the service cannot answer it again, so a
 * process makes one call per token lifetime, not a second one when the held token is not yet inside the
 * service's own refresh margin.
 *
 * When Zus refuses a token (revoked, or the host slept past its expiry), `reportRefused` drops it, and
 * the next fetch names it (`?refused=<fingerprint>`) so the service replaces it once for the whole
 * fleet. Each token counts once however often it is reported. The first refused token is replaced at
 * once; when its replacement is refused too, the next replacement waits an exponential back-off with
 * jitter (2 s, 4 s, ... up to 300 s), `getToken` throwing `TokenRefusedError` meanwhile.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";

import { type AccessToken, type ApiOptions, MAX_MIN_TTL, ZusM2MApi, fingerprint, validateClientName } from "./api.js";
import * as errors from "./errors.js";
import { type Logger, defaultLogger } from "./log.js";

/** A 429, 503 or lost connection without Retry-After is tried again after this many seconds. */
export const DEFAULT_RETRY_WAIT = 1;
/** At most one refresh-ahead attempt per this many seconds, so a failing route is not asked on every call. */
export const MIN_REFRESH_INTERVAL = 10;
export const DEFAULT_REFRESH_MARGIN = 240;
/** Back-off after the second refused token in a row: doubles from the first up to the cap, each with jitter. */
export const FIRST_REFUSAL_BACKOFF = 2;
export const MAX_REFUSAL_BACKOFF = 300;
/** A refusal this long after the previous one starts a new count (the earlier trouble is over). */
const REFUSAL_MEMORY = 2 * MAX_REFUSAL_BACKOFF;
const REMEMBERED_REFUSALS = 64;

/** What `zusFetch` needs of a provider. */
export interface TokenSource {
  getToken(): Promise<AccessToken>;
  reportRefused(accessToken: string): void;
}

export interface TokenProviderOptions extends ApiOptions {
  /** Seconds a handed-out token has left at least (default 60). */
  minTtl?: number;
  /** Seconds before that the next token is fetched ahead (default 240, at most half the token's lifetime). */
  refreshMargin?: number;
  /** Seconds within which 429, 503 and lost connections are tried again (default 20). */
  maxWait?: number;
  /** Monotonic seconds; for tests. */
  clock?: () => number;
  /** Waits `seconds`; for tests. */
  sleep?: (seconds: number) => Promise<void>;
}

interface Held {
  token: AccessToken;
  deadline: number; // when the token expires, on the provider's clock
  latest: number; // the latest it can expire, on the same clock: when it was answered, plus a second of rounding
}

/** Zus access tokens for `clientName` from the zus-m2m API at `apiUrl`, for every caller in a process. */
export class TokenProvider implements TokenSource {
  readonly clientName: string;
  readonly minTtl: number;
  readonly refreshMargin: number;
  readonly maxWait: number;
  private readonly api: ZusM2MApi;
  private readonly clock: () => number;
  private readonly sleep: (seconds: number) => Promise<void>;
  private readonly logger: Logger;
  private lifetime = 0; // the longest expires_in seen: the token's lifetime, as far as is known
  private held: Held | undefined;
  private inFlight: Promise<AccessToken> | undefined;
  private refused: string | undefined; // fingerprint the next fetch names as refused
  private nextRefreshAt = -Infinity;
  private reported: string[] = []; // fingerprints reported refused (recent ones): each counts once
  private refusals = 0; // tokens refused in a row
  private lastRefusalAt = -Infinity;
  private replaceAfter = -Infinity; // no replacement fetch before this (back-off)

  constructor(apiUrl: string, clientName: string, options: TokenProviderOptions = {}) {
    const { minTtl = 60, refreshMargin = DEFAULT_REFRESH_MARGIN, maxWait = 20 } = options;
    if (!(minTtl >= 0 && refreshMargin >= 0 && maxWait >= 0)) {
      throw new RangeError("minTtl, refreshMargin and maxWait are seconds >= 0");
    }
    if (minTtl + refreshMargin > MAX_MIN_TTL) {
      throw new RangeError(`minTtl + refreshMargin is at most ${MAX_MIN_TTL} seconds (the token route's limit)`);
    }
    this.clientName = validateClientName(clientName);
    this.minTtl = minTtl;
    this.refreshMargin = refreshMargin;
    this.maxWait = maxWait;
    this.api = new ZusM2MApi(apiUrl, options);
    this.clock = options.clock ?? (() => performance.now() / 1000);
    this.sleep = options.sleep ?? ((seconds) => delay(seconds * 1000));
    this.logger = options.logger ?? defaultLogger;
  }

  /** A token with at least `minTtl` seconds left; rejects with a `ZusM2MError` when none can be had. */
  async getToken(): Promise<AccessToken> {
    for (;;) {
      const now = this.clock();
      const held = this.held;
      if (held !== undefined && held.deadline - now >= this.minTtl) {
        if (this.inFlight || held.deadline - now >= this.window() || now < this.nextRefreshAt) {
          return held.token;
        }
        return this.lead(true); // this call refreshes; the others keep using the held token meanwhile
      }
      if (this.inFlight === undefined) {
        if (now < this.replaceAfter) throw this.refusedError(now);
        return this.lead(false);
      }
      try {
        await this.inFlight;
      } catch (error) {
        if (this.usable() === undefined) throw error;
      }
    }
  }

  /**
   * Zus refused `accessToken`: stop handing it out and ask the service to replace it (at once the first
   * time, after a back-off when its replacement is refused too).
   */
  reportRefused(accessToken: string): void {
    const refused = fingerprint(accessToken);
    if (this.reported.includes(refused) || (this.held !== undefined && this.held.token.fingerprint !== refused)) {
      return; // reported already, or already replaced (another call reported it first)
    }
    this.reported = [...this.reported.slice(-(REMEMBERED_REFUSALS - 1)), refused];
    const now = this.clock();
    this.refusals = now - this.lastRefusalAt > REFUSAL_MEMORY ? 1 : this.refusals + 1;
    this.lastRefusalAt = now;
    if (this.refusals > 1) {
      const ceiling = Math.min(MAX_REFUSAL_BACKOFF, FIRST_REFUSAL_BACKOFF * 2 ** (this.refusals - 2));
      this.replaceAfter = now + ceiling * (0.5 + Math.random() / 2); // jitter, not a secret
    }
    this.held = undefined;
    this.refused = refused;
    if (this.refusals === 1) {
      this.logger.info(`Zus refused token ${refused} of client ${this.clientName}; the next fetch asks for a replacement`);
    } else {
      const wait = Math.max(0, this.replaceAfter - now);
      this.logger.warn(
        `Zus refused token ${refused} of client ${this.clientName}, the ${this.refusals}. in a row; ` +
          `the next replacement in ${wait.toFixed(1)} s`,
      );
    }
  }

  toString(): string {
    return `TokenProvider(${this.api.apiUrl}, ${this.clientName})`;
  }

  private refusedError(now: number): errors.TokenRefusedError {
    const wait = this.replaceAfter - now;
    return new errors.TokenRefusedError(
      `Zus refused the last ${this.refusals} tokens of client '${this.clientName}' (revoked, or Zus is refusing ` +
        `its tokens); the next replacement is asked for in ${wait.toFixed(0)} s`,
      wait,
    );
  }

  /**
   * Seconds left under which the held token is refreshed ahead (and what the route is asked for):
   * `minTtl` plus the margin, the margin being `refreshMargin` but at most what leaves half the token's
   * known lifetime (none before a token is seen).
   */
  private window(): number {
    return Math.min(this.minTtl + this.refreshMargin, Math.max(this.minTtl, this.lifetime / 2));
  }

  /**
   * The `minTtl` a fetch asks for: the window; while the held token is inside it, also more than that
   * token can have left at the service (but no more than a token can have), so the answer is its
   * successor rather than the held token again, which would be asked for anew `MIN_REFRESH_INTERVAL`
   * later (a second call per lifetime whenever the window reaches past the service's refresh margin).
   */
  private askedMinTtl(now: number): number {
    const window = this.window();
    let asked = Math.ceil(window);
    const held = this.held;
    if (held !== undefined && held.deadline - now < window) {
      const ceiling = this.lifetime ? Math.min(MAX_MIN_TTL, Math.floor(this.lifetime)) : MAX_MIN_TTL;
      asked = Math.max(asked, Math.min(Math.floor(held.latest - now) + 1, ceiling));
    }
    return asked;
  }

  private usable(): AccessToken | undefined {
    const held = this.held;
    return held !== undefined && held.deadline - this.clock() >= this.minTtl ? held.token : undefined;
  }

  /** Starts the one fetch every other call awaits (or, ahead of expiry, does not). */
  private lead(ahead: boolean): Promise<AccessToken> {
    const fetched = this.fetch(!ahead).catch((error: unknown) => {
      const wait = error instanceof errors.ZusM2MApiError && error.retryAfter ? error.retryAfter : 0;
      this.nextRefreshAt = this.clock() + Math.max(MIN_REFRESH_INTERVAL, wait);
      const current = ahead && error instanceof errors.ZusM2MError ? this.usable() : undefined;
      if (current === undefined) throw error;
      this.logger.warn(
        `refreshing the token of client ${this.clientName} ahead of expiry failed (${String(error)}); ` +
          "the current one is used meanwhile",
      );
      return current;
    });
    const flight = fetched.finally(() => {
      this.inFlight = undefined;
    });
    this.inFlight = flight;
    return flight;
  }

  /** One token from the route, held once it arrives; 429, 503 and no answer are tried again within `maxWait` when `retry`. */
  private async fetch(retry: boolean): Promise<AccessToken> {
    const giveUpAt = this.clock() + this.maxWait;
    let askedAgain = false;
    for (;;) {
      const refused = this.refused;
      const askedAt = this.clock();
      let token: AccessToken;
      try {
        token = await this.api.token(this.clientName, { minTtl: this.askedMinTtl(askedAt), refused });
      } catch (error) {
        const retriable =
          error instanceof errors.ThrottledError ||
          error instanceof errors.UnavailableError ||
          error instanceof errors.TransportError;
        if (!retriable) {
          throw error;
        }
        const wait = error.retryAfter ?? DEFAULT_RETRY_WAIT;
        if (!retry || this.clock() + wait > giveUpAt) throw error;
        this.logger.info(`token route for ${this.clientName}: ${error.message}; trying again in ${wait.toFixed(0)} s`);
        await this.sleep(wait);
        continue;
      }
      if (token.fingerprint === this.refused && refused !== this.refused && !askedAgain) {
        askedAgain = true; // reported refused while this request was under way: name it this time
        continue;
      }
      this.refused = undefined; // named, or a newer token is in hand: nothing left to report
      this.held = { token, deadline: askedAt + token.expiresIn, latest: this.clock() + token.expiresIn + 1 };
      this.lifetime = Math.max(this.lifetime, token.expiresIn);
      this.nextRefreshAt = this.clock() + MIN_REFRESH_INTERVAL;
      this.logger.debug(`token ${token.fingerprint} for client ${this.clientName} fetched, ${token.expiresIn} s left`);
      return token;
    }
  }
}
