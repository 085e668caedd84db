"""What the service owns, checked after every test: records, secrets and Zus's clients agree, nothing
orphaned, every deleted client gone everywhere (``SystemCheck``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reliability_outside import Aws, Emulator
from reliability_support import ADMIN_CLIENT_ID


@dataclass
class Integrity:
    """Lost or damaged data, one line per problem; a line names clients and ids, never a secret."""

    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.problems)


# A rotated secret may propagate at Zus for up to 30 s (either secret accepted meanwhile): a check of a
# client whose secret changed more recently than this is never taken from memory.
_SETTLED_SECONDS = 35.0
# How long the check waits for rotations in progress to finish (the rotation player takes about a second).
_ROTATION_PATIENCE = 30.0
# All a deleted client's token item may hold: its keys, its copy's status ("deleting") and its TTL.
_TOMBSTONE = {"pk", "sk", "recordStatus", "ttl"}


class SystemCheck:
    """The whole system's integrity, whatever the scenarios did:

    * every app client at Zus (the bootstrap admin aside) belongs to exactly one active record: the one
      of its name that names its id (a second client of a name, or one no record names, is an orphan);
    * every active record names a client Zus has, and its AWSCURRENT secret holds that client and gets a
      token at Zus;
    * every client secret belongs to an active record or is scheduled for deletion (no orphan secret);
    * every deleted client (``deleted``: a DELETE the suite saw answer 204, and every secret scheduled
      for deletion) is gone at Zus, has no record, its secret is scheduled for deletion and its token
      item is purged (a tombstone); unless the name was provisioned again since (then it is active,
      checked as such).

    A token request per active client at every check would spend Zus's hourly allowance of each client
    (200) within a long session: a client whose AWSCURRENT version and Zus's secret are both unchanged
    since a check that got a token, and whose Zus secret changed more than ``_SETTLED_SECONDS`` ago, is
    taken as checked (``thorough`` asks Zus for every client, as the session's last check does)."""

    def __init__(self, emulator: Emulator, aws: Aws) -> None:
        self.emulator = emulator
        self.aws = aws
        self._accepted: set[tuple[str, str, int]] = set()  # (app client id, AWSCURRENT version, updatedAt)

    def run(self, deleted: Iterable[str] = (), *, thorough: bool = False) -> Integrity:
        # A rotation a scenario started may still be running (Zus has the new secret, AWSCURRENT the
        # old until finishSecret): the check waits for it; one stuck longer is checked as it stands.
        deadline = time.monotonic() + _ROTATION_PATIENCE
        while self.aws.rotating() and time.monotonic() < deadline:
            time.sleep(0.2)
        result = Integrity()
        zus = [client for client in self.emulator.app_clients() if client["clientId"] != ADMIN_CLIENT_ID]
        active = {record.name: record for record in self.aws.active_records()}
        secrets = self.aws.managed_secrets()
        result.problems += self._orphans_at_zus(zus, active)
        result.problems += self._active_clients_broken(zus, active, thorough=thorough)
        result.problems += [
            f"{name}: a secret no active record owns, not scheduled for deletion (orphan)"
            for name, scheduled in sorted(secrets.items())
            if name not in active and not scheduled
        ]
        gone = (set(deleted) | {name for name, scheduled in secrets.items() if scheduled}) - set(active)
        result.problems += self._deleted_remains(gone, zus, secrets)
        return result

    @staticmethod
    def _orphans_at_zus(zus: list[dict[str, Any]], active: dict[str, Any]) -> list[str]:
        owners = {record.app_client_id: record.name for record in active.values()}
        problems = []
        for client in zus:
            owner = owners.get(client["id"])
            if owner is None:
                problems.append(f"Zus client {client['id']} ({client['name']}): no active record owns it (orphan)")
            elif owner != client["name"]:
                problems.append(f"Zus client {client['id']} ({client['name']}): owned by the record of {owner}")
        return problems

    def _active_clients_broken(self, zus: list[dict[str, Any]], active: dict[str, Any], *, thorough: bool) -> list[str]:
        at_zus = {client["id"]: client for client in zus}
        now = time.time()
        problems = []
        for name, record in sorted(active.items()):
            client = at_zus.get(record.app_client_id)
            if client is None:
                problems.append(f"{name}: the record's Zus client {record.app_client_id} is gone (lost)")
                continue
            current = self.aws.current_secret(name)
            if current is None or current[1].get("appClientId") != record.app_client_id:
                problems.append(f"{name}: AWSCURRENT does not hold the record's Zus client")
                continue
            version, credentials = current
            key = (record.app_client_id, version, int(client["updatedAt"]))
            if not thorough and key in self._accepted and now - key[2] > _SETTLED_SECONDS:
                continue
            response = self.emulator.token(credentials["clientId"], credentials["clientSecret"])
            if response.status_code == 200:
                self._accepted.add(key)
            else:
                problems.append(f"{name}: Zus refuses AWSCURRENT's secret ({response.status_code})")
        return problems

    def _deleted_remains(self, gone: set[str], zus: list[dict[str, Any]], secrets: dict[str, bool]) -> list[str]:
        names_at_zus = {client["name"] for client in zus}
        problems = []
        for name in sorted(gone):
            if name in names_at_zus:
                problems.append(f"{name}: deleted, but Zus still has a client of that name")
            if self.aws.records.get(name) is not None:
                problems.append(f"{name}: deleted, but its record remains")
            if secrets.get(name) is False:
                problems.append(f"{name}: deleted, but its secret is not scheduled for deletion")
            item = self.aws.token_item(name)
            # The delete leaves a tombstone (its copy's status and a TTL) that no later write changes.
            if item is not None and (set(item) != _TOMBSTONE or item["recordStatus"]["S"] != "deleting"):
                problems.append(f"{name}: deleted, but its token item holds {sorted(set(item) - _TOMBSTONE)}")
        return problems
