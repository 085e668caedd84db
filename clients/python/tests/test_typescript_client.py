"""The TypeScript client (clients/typescript, ``@zus-m2m/client``) against the signed local stack: its
``npm test`` (node's test runner on the compiled tests) with the stack described in its environment,
signing as the stack's local admin and consumer from the credentials file the stack wrote. Its
dependencies come from ``make test`` (``npm ci``, when package-lock.json changed).

The vend calls of its fleet test (8 Node processes x 50 ``getToken`` calls) are counted here, from the
stack's own console: one line per request it served.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from client_support import token_route_calls

from zus_local.local_principals import ADMIN_USER as ADMIN_PROFILE
from zus_local.local_principals import CONSUMER_USER as CONSUMER_PROFILE

PACKAGE = Path(__file__).resolve().parents[2] / "typescript"
FLEET_CLIENT, WORKERS = "ts-fleet", 8  # as clients/typescript/test/local-stack.test.ts names them
SUMMARY = ("# tests ", "# pass ", "# fail ", "# skipped ", "# cancelled ")


def node_environment(stack: Any, consumer_arn: str) -> dict[str, str]:
    """The stack, described for the TypeScript tests; no AWS credentials but the stack's profiles."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "ZUS_M2M_"))}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(stack.credentials_file),
        AWS_CONFIG_FILE=str(Path(stack.credentials_file).with_name("no-config")),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_REGION="us-east-1",
        ZUS_M2M_TEST_API_URL=stack.api,
        ZUS_M2M_TEST_ZUS_URL=stack.zus,
        ZUS_M2M_TEST_MOTO_URL=stack.moto,
        ZUS_M2M_TEST_ADMIN_PROFILE=ADMIN_PROFILE,
        ZUS_M2M_TEST_CONSUMER_PROFILE=CONSUMER_PROFILE,
        ZUS_M2M_TEST_CONSUMER_ARN=consumer_arn,
    )
    return env


def test_the_typescript_client_against_the_local_stack(local_stack: Any, consumer_arn: str) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "npm is not on PATH: the TypeScript client's tests need Node 20 or later"
    assert (PACKAGE / "node_modules").is_dir(), "run `make ts-deps` (npm ci in clients/typescript) first"
    run = subprocess.run(
        [npm, "test"],
        cwd=PACKAGE,
        env=node_environment(local_stack, consumer_arn),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    lines = run.stdout.splitlines()
    summary = [line for line in lines if line.startswith(SUMMARY)]
    fleet = [line for line in lines if "Node worker processes" in line]
    print("\n".join(["npm test:", *fleet, *summary]))
    assert run.returncode == 0, failures(lines)
    assert "# fail 0" in summary
    assert fleet, "the fleet test did not run: the local-stack tests were skipped"
    vend_calls = token_route_calls(local_stack, FLEET_CLIENT)
    print(f"{WORKERS} Node worker processes x 50 getToken calls: {vend_calls} token route call(s) seen by the API")
    assert vend_calls == WORKERS


def failures(lines: list[str]) -> str:
    """The TAP blocks of the failed tests (the report is masked of tokens like any test's)."""
    shown: list[str] = []
    for index, line in enumerate(lines):
        if line.lstrip().startswith("not ok"):
            shown.extend(lines[index : index + 25])
    return "\n".join(shown)[-6000:]
