import { debuglog } from "node:util";

/** Where the client logs. Lines name tokens by fingerprint only, never a token or a credential. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

const debug = debuglog("zus-m2m");

/** Debug and info lines with `NODE_DEBUG=zus-m2m`; warnings always, on stderr. */
export const defaultLogger: Logger = {
  debug: (message) => debug(message),
  info: (message) => debug(message),
  warn: (message) => console.warn(`zus-m2m: ${message}`),
};
