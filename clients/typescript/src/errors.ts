/**
 * Every error the client throws, and how an HTTP error answer becomes one.
 *
 * `ZusM2MApiError` carries the API's RFC 9457 problem document (`status`, `problemType`, `title`,
 * `detail`) and `retryAfter`; a subclass per kind of failure lets callers catch what they can act on.
 * Messages are built from those fields and from names only, never from a token, a credential or a
 * request header, so an error is always safe to log.
 */
import { STATUS_CODES } from "node:http";

import type { components } from "./openapi.js";

export type Problem = components["schemas"]["Problem"];

const MAX_DETAIL = 500;

/** Base of every error this package throws. */
export class ZusM2MError extends Error {
  override name = "ZusM2MError";
}

/** Something the client needs is missing or malformed: the API URL, the region, AWS credentials. */
export class ConfigurationError extends ZusM2MError {
  override name = "ConfigurationError";
}

/**
 * Zus kept refusing the client's fresh tokens: no replacement is asked for before `retryAfter` seconds
 * (the back-off that keeps a refused client from spending its hourly token budget).
 */
export class TokenRefusedError extends ZusM2MError {
  override name = "TokenRefusedError";
  constructor(
    detail: string,
    readonly retryAfter: number,
  ) {
    super(detail);
  }
}

export interface ApiErrorFields {
  status?: number | undefined;
  title?: string;
  problemType?: string;
  retryAfter?: number | undefined;
}

/** The API answered with an error (or, for `TransportError`, did not answer at all). */
export class ZusM2MApiError extends ZusM2MError {
  override name = "ZusM2MApiError";
  readonly detail: string;
  readonly status: number | undefined;
  readonly title: string;
  /** The problem document's `type` (`urn:zus-m2m:problem:...`), `about:blank` when it had none. */
  readonly problemType: string;
  /** Seconds to wait before trying again (the answer's Retry-After), when known. */
  readonly retryAfter: number | undefined;

  constructor(detail: string, fields: ApiErrorFields = {}) {
    const title = fields.title ?? "";
    super(
      fields.status === undefined ? detail : title ? `${fields.status} ${title}: ${detail}` : `${fields.status}: ${detail}`,
    );
    this.detail = detail;
    this.status = fields.status;
    this.title = title;
    this.problemType = fields.problemType ?? "about:blank";
    this.retryAfter = fields.retryAfter;
  }
}

/** 400 or 422: the API refused the request as sent (a bad name, an unknown role, an unknown field). */
export class BadRequestError extends ZusM2MApiError {
  override name = "BadRequestError";
}
/** 401 or 403: API Gateway refused the SigV4 signature, or the caller's IAM identity may not call the route. */
export class ForbiddenError extends ZusM2MApiError {
  override name = "ForbiddenError";
}
/** 404: no such managed client (or no such route on this deployment). */
export class NotFoundError extends ZusM2MApiError {
  override name = "NotFoundError";
}
/** 409: e.g. the name exists with another role, or a rotation is already in progress. */
export class ConflictError extends ZusM2MApiError {
  override name = "ConflictError";
}
/** 429: try again after `retryAfter` seconds. */
export class ThrottledError extends ZusM2MApiError {
  override name = "ThrottledError";
}
/** 5xx: the service or one of its dependencies failed; `retryAfter` says when to try again if known. */
export class UnavailableError extends ZusM2MApiError {
  override name = "UnavailableError";
}
/** No answer at all: the connection failed or timed out. `status` is undefined. */
export class TransportError extends ZusM2MApiError {
  override name = "TransportError";
}

export function errorClass(status: number): typeof ZusM2MApiError {
  if (status === 400 || status === 422) return BadRequestError;
  if (status === 401 || status === 403) return ForbiddenError;
  if (status === 404) return NotFoundError;
  if (status === 409) return ConflictError;
  if (status === 429) return ThrottledError;
  if (status >= 500) return UnavailableError;
  return ZusM2MApiError;
}

/** Retry-After as seconds from `nowMs` (epoch milliseconds): delta-seconds or an HTTP date (RFC 9110 10.2.3). */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  const when = Date.parse(text);
  return Number.isNaN(when) ? undefined : Math.max(0, (when - nowMs) / 1000);
}

/**
 * The typed error for an error answer: from its problem document, from API Gateway's own
 * `{"message": ...}`, or, for any other body, from the status alone (an unknown body is never echoed).
 */
export function errorFromResponse(
  status: number,
  headers: Headers,
  body: string,
  nowMs: number = Date.now(),
): ZusM2MApiError {
  const document = jsonObject(headers.get("content-type") ?? "", body);
  let title = STATUS_CODES[status] ?? "Error";
  let problemType = "about:blank";
  let detail: string;
  if (document !== undefined && isProblemLike(document)) {
    detail = document.detail;
    if (typeof document.title === "string" && document.title) title = document.title;
    if (typeof document.type === "string" && document.type) problemType = document.type;
  } else if (document !== undefined && typeof (document["message"] ?? document["Message"]) === "string") {
    // API Gateway's own answers: {"message"} (a bad signature, throttling, an unknown route) and
    // {"Message"} (an IAM policy that does not allow execute-api:Invoke, with the reason)
    detail = String(document["message"] ?? document["Message"]);
  } else {
    detail = `the API answered ${status} without a problem document`;
  }
  const Kind = errorClass(status);
  return new Kind(oneLine(detail), {
    status,
    title,
    problemType,
    retryAfter: parseRetryAfter(headers.get("retry-after"), nowMs),
  });
}

function isProblemLike(document: Record<string, unknown>): document is Partial<Problem> & { detail: string } {
  return typeof document["detail"] === "string";
}

function jsonObject(contentType: string, body: string): Record<string, unknown> | undefined {
  if (!contentType.toLowerCase().includes("json")) return undefined;
  try {
    const document: unknown = JSON.parse(body);
    return typeof document === "object" && document !== null && !Array.isArray(document)
      ? (document as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function oneLine(text: string): string {
  const flat = text.split(/\s+/).filter(Boolean).join(" ");
  return flat.length <= MAX_DETAIL ? flat : `${flat.slice(0, MAX_DETAIL - 1)}…`;
}
