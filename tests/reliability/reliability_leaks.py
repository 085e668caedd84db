"""No secret or token where it must not be: the stack's output lines and every answer, scanned."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reliability_calls import Answer, RouteSigner
from reliability_support import TOKEN_ROUTE


def signing_secrets(credentials_file: str | Path) -> set[str]:
    """The secret keys of the local admin and consumer, which no output may carry either."""
    signer = RouteSigner(credentials_file)
    return {signer.admin.credentials.secret_key, signer.consumer.credentials.secret_key}


def scan_for_leaks(lines: Sequence[str], answers: Sequence[Answer], secrets: set[str], tokens: set[str]) -> list[str]:
    """Where a secret appears in ``lines`` or ``answers`` (status, headers, body), or a token anywhere
    but the body of a token route's 200; a JWT's signature alone counts as the token. Findings name
    the place, never the value."""
    secret_needles = {value for value in secrets if value}
    token_needles = {value for value in tokens if value}
    token_needles |= {value.rsplit(".", 1)[1] for value in token_needles if value.count(".") == 2}
    found: list[str] = []

    def look(text: str, needles: set[str], what: str, where: str) -> None:
        if any(needle in text for needle in needles):
            found.append(f"{what} in {where}")

    for number, line in enumerate(lines, 1):
        look(line, secret_needles, "a client secret", f"output line {number}")
        look(line, token_needles, "an access token", f"output line {number}")
    for answer in answers:
        head = f"{answer.status}\n" + "\n".join(f"{key}: {value}" for key, value in answer.headers.items())
        body = answer.body.decode("utf-8", "replace")
        where = f"the answer to {answer.method} {answer.path} ({answer.status})"
        look(head + body, secret_needles, "a client secret", where)
        token_body_allowed = TOKEN_ROUTE.match(answer.path) is not None and answer.status == 200
        look(head if token_body_allowed else head + body, token_needles, "an access token", where)
    return found
