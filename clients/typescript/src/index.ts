/**
 * Zus access tokens from a zus-m2m deployment, for Node and TypeScript services.
 *
 *     const provider = new TokenProvider("https://abc123.execute-api.us-east-1.amazonaws.com", "billing-service");
 *     const zus = zusFetch(provider);
 *     const answer = await zus("https://api.sandbox.zusapi.com/fhir/Patient");
 */
export {
  AccessToken,
  type AppClient,
  type AppClientDetails,
  type ApiOptions,
  type HttpAnswer,
  MAX_MIN_TTL,
  SigV4Transport,
  type SigV4Options,
  type Transport,
  ZusM2MApi,
  fingerprint,
  validateClientName,
} from "./api.js";
export {
  BadRequestError,
  ConfigurationError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  type Problem,
  ThrottledError,
  TokenRefusedError,
  TransportError,
  UnavailableError,
  ZusM2MApiError,
  ZusM2MError,
  errorFromResponse,
} from "./errors.js";
export { type Fetch, type ZusFetchOptions, zusFetch } from "./fetch.js";
export { type Logger, defaultLogger } from "./log.js";
export { TokenProvider, type TokenProviderOptions, type TokenSource } from "./tokens.js";
