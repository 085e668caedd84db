"""``nextToken`` values sealed with the stack's KMS key: opaque and tamper-evident.

A list position (the name the next page starts after) is encrypted with ``kms:Encrypt`` under an
encryption context naming its purpose and the table, and sent as URL-safe base64. ``kms:Decrypt`` with
the same context authenticates it: anything else (a forged or edited token, one made for another
table or purpose, base64 of a record key) fails to decrypt and is a 400 that says the token was not
issued by this service.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from zus_m2m.aws._errors import error_code, translated
from zus_m2m.errors import InvalidRequest
from zus_m2m.validation import CLIENT_NAME_PATTERN

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient

PURPOSE = "app-clients-page"
# What KMS answers for a ciphertext it did not make, made under another context, or cut short.
_NOT_OURS = ("InvalidCiphertextException", "IncorrectKeyException", "ValidationException")
_MAX_TOKEN = 2048  # characters; a sealed position is about 300


def not_issued() -> InvalidRequest:
    return InvalidRequest("nextToken was not issued by this service (send back a previous page's nextToken)")


class KmsPageTokens:
    def __init__(self, kms: KMSClient, key_id: str, table_name: str) -> None:
        self._kms = kms
        self._key_id = key_id
        self._context = {"zus-m2m:purpose": PURPOSE, "zus-m2m:table": table_name}

    def seal(self, position: str) -> str:
        with translated("sealing a page token"):
            blob = self._kms.encrypt(KeyId=self._key_id, Plaintext=position.encode(), EncryptionContext=self._context)[
                "CiphertextBlob"
            ]
        return base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def open(self, token: str) -> str:
        try:
            if len(token) > _MAX_TOKEN:
                raise ValueError(token)
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error):
            raise not_issued() from None
        with translated("opening a page token"):
            try:
                plain = self._kms.decrypt(CiphertextBlob=blob, KeyId=self._key_id, EncryptionContext=self._context)[
                    "Plaintext"
                ]
            except ClientError as exc:
                if error_code(exc) in _NOT_OURS:
                    raise not_issued() from None
                raise
        try:
            position = plain.decode()
        except UnicodeDecodeError:
            raise not_issued() from None
        if not CLIENT_NAME_PATTERN.fullmatch(position):
            raise not_issued()
        return position
