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
  moto: string;
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
    moto: required("ZUS_M2M_TEST_MOTO_URL"),
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

/**
 * The client's cached token, as if Zus had minted it 11 s earlier (its stored lifetime says so): the
 * service never replaces a token younger than 10 s on a report, and the tests wait on no clock. A
 * DynamoDB UpdateItem sent straight to the stack's moto (which checks no signature), as the Python
 * client's tests do with boto3.
 */
export async function mintedLongAgo(stack: Stack, name: string): Promise<void> {
  const answer = await fetch(stack.moto, {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": "DynamoDB_20120810.UpdateItem",
      authorization: "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request",
    },
    body: JSON.stringify({
      TableName: "zus-m2m-local", // the local stack's table, named after the stack
      Key: { pk: { S: `client#${name}` }, sk: { S: "token" } },
      UpdateExpression: "SET tokenLifetime = tokenLifetime + :older",
      ExpressionAttributeValues: { ":older": { N: "11" } },
    }),
  });
  if (!answer.ok) throw new Error(`ageing the cached token of ${name} failed: ${answer.status} ${await answer.text()}`);
}
