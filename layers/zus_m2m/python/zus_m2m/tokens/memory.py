"""The memory tier: what one container remembers of the clients it serves.

With each client's token the container keeps the client's record as it last read it (its consumers and
its Zus app client id): who may get the token, and for which app client it must have been minted. A
token of another app client is never kept. The bootstrap admin client has no record to bind its token
to; its token is kept apart (``unbound``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from zus_m2m.access import Principal, consumers_of
from zus_m2m.values import CachedToken, ClientView


@dataclass(frozen=True)
class KnownClient:
    """What this container knows of a managed client, from its record as read at ``checked_at``: the
    Zus app client it names and its consumers (parsed), and the token of that app client it last saw."""

    app_client_id: str
    consumers: tuple[Principal, ...]
    checked_at: float
    token: CachedToken | None = None


class MemoryTier:
    def __init__(self, admin_client_name: str) -> None:
        self._admin_client_name = admin_client_name
        self._known: dict[str, KnownClient] = {}
        # Tokens of clients served without a record: the bootstrap admin's.
        self._unbound: dict[str, CachedToken] = {}

    def known(self, client: str) -> KnownClient | None:
        return self._known.get(client)

    def unbound(self, client: str) -> CachedToken | None:
        return self._unbound.get(client)

    def learn(self, client: str, view: ClientView, now: float) -> KnownClient | None:
        """Remember what the record just read says (None: no active client of that name), with the token
        read if it is of the app client the record names (the table's, read consistently, is the fleet's:
        a token replaced there, a refused one, leaves memory too), else the one remembered."""
        app_client_id = view.app_client_id
        if app_client_id is None:
            self._known.pop(client, None)
            return None
        previous = self._known.get(client)
        token = bound(view.token.token, app_client_id) or (
            previous.token if previous is not None and previous.app_client_id == app_client_id else None
        )
        # Kept marked as served from memory: its hits return it as it is.
        kept = None if token is None else token.served_from("memory")
        known = KnownClient(app_client_id, consumers_of(view.consumers), checked_at=now, token=kept)
        self._known[client] = known
        return known

    def remember(self, client: str, token: CachedToken) -> None:
        """Keep ``token`` if it is of the app client this container knows under that name and expires
        later than the one it has."""
        if client == self._admin_client_name:
            self._unbound[client] = (later(self._unbound.get(client), token) or token).served_from("memory")
            return
        known = self._known.get(client)
        if known is not None and known.app_client_id == token.app_client_id:
            self._known[client] = replace(known, token=(later(known.token, token) or token).served_from("memory"))

    def forget(self, client: str, token: CachedToken) -> None:
        """Drop ``token`` (one Zus refused) if it is the one kept for ``client``."""
        known = self._known.get(client)
        if known is not None and known.token == token:
            self._known[client] = replace(known, token=None)


def bound(token: CachedToken | None, app_client_id: str | None) -> CachedToken | None:
    """``token`` if it was minted for ``app_client_id`` (None: for any, the bootstrap admin's)."""
    if token is None or app_client_id is None:
        return token
    return token if token.app_client_id == app_client_id else None


def later(first: CachedToken | None, second: CachedToken | None) -> CachedToken | None:
    if first is None or (second is not None and second.expires_at > first.expires_at):
        return second
    return first
