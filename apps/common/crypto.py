"""Encrypting secrets at rest (kubeconfigs, database passwords) with FIELD_ENCRYPTION_KEY.

Several keys may be given, comma-separated, newest first: values are encrypted with the first
and decrypted with any, so the key can be rotated.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class UnreadableSecret(Exception):
    """The stored value was encrypted with a key the portal no longer has."""


@cache
def _cipher(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEY is not a valid Fernet key: {exc}"
        ) from exc


def encrypt(plaintext: str) -> str:
    return _cipher(settings.FIELD_ENCRYPTION_KEY).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _cipher(settings.FIELD_ENCRYPTION_KEY).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise UnreadableSecret("This secret cannot be decrypted with the configured key.") from None
