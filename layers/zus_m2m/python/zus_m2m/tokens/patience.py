"""Obtaining a token with a secret Zus may not accept everywhere yet.

A secret Zus has just made (a rotation, a new or recovered client) takes time to take effect: Auth0,
which Zus's auth server is, documents up to 30 s, during which one request may accept it and the next
refuse it. The flows that must prove such a secret (testSecret, provisioning's proof, the sweep's
health check of a settling version) ask again on refused credentials, with backoff, for a while.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zus_m2m import deadline, errors
from zus_m2m.backoff import backoff
from zus_m2m.ports import Clock, Sleep, TokenIssuer
from zus_m2m.values import CachedToken, ClientCredentials

logger = logging.getLogger(__name__)

# Left to the flow after its last attempt, when it runs within an invocation's deadline.
_MARGIN_SECONDS = 3.0


@dataclass(frozen=True)
class Patience:
    """How long to keep asking (longer than Auth0's 30 s), and the pauses in between."""

    seconds: float = 60.0
    first_pause: float = 1.0
    max_pause: float = 8.0


def issue_patiently(
    issuer: TokenIssuer,
    client: str,
    credentials: ClientCredentials,
    patience: Patience,
    *,
    clock: Clock,
    sleep: Sleep,
) -> CachedToken:
    """A token with ``credentials`` (through the issuer, so it is cached); refused credentials are
    retried with backoff for up to ``patience.seconds``, and never past the invocation's deadline.
    Any other error, and the last refusal, propagate."""
    until = clock() + patience.seconds
    for pause in backoff(patience.first_pause, patience.max_pause):
        try:
            return issuer.issue_with(client, credentials)
        except errors.ZusCredentialsRefused:
            if clock() + pause > until or deadline.time_left() < pause + _MARGIN_SECONDS:
                raise
            logger.info("the secret is not accepted yet; retrying", extra={"client": client, "pause": pause})
            sleep(pause)
    raise AssertionError("unreachable: backoff never ends")
