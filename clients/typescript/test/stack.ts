/**
 * The signed local stack the integration tests run against (`python -m zus_local`), as the Python
 * driver (clients/python/tests/test_typescript_client.py) describes it in the environment; undefined
 * when the tests run without one.
 */
import { defaultProvider } from "@aws-sdk/credential-provider-node";

import { SigV4Transport, type Logger } from "../src/index.js";

export interface Stack {
  api: string;
  zus: string;
  adminProfile: string;
  consumerProfile: string;
  consumerArn: string;
}

export function stackFromEnvironment(): Stack | undefined {
  const env = process.env;
  const api = env["ZUS_M2M_TEST_API_URL"];
  if (!api) return undefined;
  return {
    api,
    zus: required("ZUS_M2M_TEST_ZUS_URL"),
    adminProfile: required("ZUS_M2M_TEST_ADMIN_PROFILE"),
    consumerProfile: required("ZUS_M2M_TEST_CONSUMER_PROFILE"),
    consumerArn: required("ZUS_M2M_TEST_CONSUMER_ARN"),
  };
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (ZUS_M2M_TEST_API_URL is)`);
  return value;
}

/** Signs as `profile` of the stack's credentials file (AWS_SHARED_CREDENTIALS_FILE). */
export function signedAs(stack: Stack, profile: string, logger?: Logger): SigV4Transport {
  return new SigV4Transport(stack.api, {
    region: "us-east-1",
    credentials: defaultProvider({ profile }),
    ...(logger ? { logger } : {}),
  });
}
