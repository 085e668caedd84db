/**
 * `zusFetch(provider)`: `fetch` with `Authorization: Bearer <token>` from a `TokenProvider`.
 *
 * On a 401 it reports the refused token, takes the next one and sends the request once more, as the
 * Python client's `ZusAuth` does; the retried answer is returned whatever it is, so a request is sent
 * at most twice. When the provider has no next token to give (it is backing off because Zus keeps
 * refusing fresh ones), the 401 is returned as it is, and the next call rejects with the provider's
 * `TokenRefusedError` without sending anything. A body that can only be read once (a stream) is not
 * sent again: the 401 is returned.
 */
import { ZusM2MError } from "./errors.js";
import { type Logger, defaultLogger } from "./log.js";
import type { TokenSource } from "./tokens.js";

export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface ZusFetchOptions {
  /** The `fetch` to send with (default: the global one). */
  fetch?: Fetch;
  logger?: Logger;
}

export function zusFetch(provider: TokenSource, options: ZusFetchOptions = {}): Fetch {
  const send = options.fetch ?? ((input, init) => fetch(input, init));
  const logger = options.logger ?? defaultLogger;
  return async (input, init = {}) => {
    const token = await provider.getToken();
    const again = input instanceof Request ? input.clone() : input; // a Request's body is read when sent
    const first = await send(input, withBearer(input, init, token.accessToken));
    if (first.status !== 401) return first;
    provider.reportRefused(token.accessToken);
    let fresh;
    try {
      fresh = await provider.getToken();
    } catch (error) {
      if (!(error instanceof ZusM2MError)) throw error;
      logger.warn(`Zus refused token ${token.fingerprint} and no other one was vended (${error.message}); not retrying`);
      return first;
    }
    if (fresh.accessToken === token.accessToken) {
      logger.warn(`Zus refused token ${token.fingerprint} and no other one was vended; not retrying`);
      return first;
    }
    if (init.body instanceof ReadableStream) {
      logger.warn(`Zus refused token ${token.fingerprint}; the request's body cannot be sent again`);
      return first;
    }
    await first.body?.cancel(); // the connection goes back to the pool for the retry
    logger.info(`Zus refused token ${token.fingerprint}; sending the request once more with ${fresh.fingerprint}`);
    return send(again, withBearer(again, init, fresh.accessToken));
  };
}

function withBearer(input: string | URL | Request, init: RequestInit, accessToken: string): RequestInit {
  const headers = new Headers(input instanceof Request ? input.headers : undefined);
  new Headers(init.headers).forEach((value, key) => headers.set(key, value));
  headers.set("authorization", `Bearer ${accessToken}`);
  return { ...init, headers };
}
