"""A consumer that is an IAM role with a path gets tokens as its sessions sign: the client lists the
role's ARN (``arn:aws:iam::<account>:role/team/service/<name>``), while a session of it signs as
``arn:aws:sts::<account>:assumed-role/<name>/<session>``, which carries no path. The signature is
checked by the local API's IAM authorizer against moto's STS, as API Gateway checks it against AWS's."""

from __future__ import annotations

import json
import uuid

import requests
from local_stack_process import StackProcess

from zus_local.sigv4 import ExecuteApiAuth

TRUST_ANYONE_IN_THE_ACCOUNT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
}
# What docs/security.md gives a consumer: the token route of every client (the service checks which).
INVOKE_TOKEN_ROUTE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "execute-api:Invoke",
            "Resource": "arn:aws:execute-api:*:*:*/*/GET/app-clients/*/token",
        }
    ],
}


def test_a_session_of_a_role_with_a_path_gets_a_token_of_a_client_that_lists_the_role(stack: StackProcess) -> None:
    iam, sts = stack.client("iam"), stack.client("sts")
    role_name = f"billing-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(
        RoleName=role_name, Path="/team/service/", AssumeRolePolicyDocument=json.dumps(TRUST_ANYONE_IN_THE_ACCOUNT)
    )["Role"]
    iam.put_role_policy(RoleName=role_name, PolicyName="invoke", PolicyDocument=json.dumps(INVOKE_TOKEN_ROUTE))
    role_arn = role["Arn"]
    assert role_arn == f"arn:aws:iam::123456789012:role/team/service/{role_name}"
    assumed = sts.assume_role(RoleArn=role_arn, RoleSessionName="task-1")
    assert assumed["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::123456789012:assumed-role/{role_name}/task-1"
    credentials = assumed["Credentials"]
    session = requests.Session()
    session.auth = ExecuteApiAuth(
        credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    )

    name = f"e2e-role-path-{uuid.uuid4().hex[:8]}"
    created = stack.admin.post(f"{stack.api}/app-clients", json={"name": name, "consumers": [role_arn]}, timeout=30)
    assert created.status_code == 201, created.text
    try:
        token = session.get(f"{stack.api}/app-clients/{name}/token", timeout=10)
        # The local consumer (an IAM user the client does not list) may invoke the route but is refused.
        stranger = stack.consumer.get(f"{stack.api}/app-clients/{name}/token", timeout=10)
    finally:
        deleted = stack.admin.delete(f"{stack.api}/app-clients/{name}", timeout=30)
    assert token.status_code == 200, token.text[:300]
    assert token.json()["token_type"] == "Bearer"
    assert stranger.status_code == 403, stranger.text[:300]
    assert deleted.status_code == 204, deleted.text
