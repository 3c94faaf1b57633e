"""Secrets at rest and signed values, all keyed by `HERALD_SECRET_KEY`.

Bot tokens are stored as ``enc:v1:<Fernet token>``. The Fernet key (AES-128-CBC + HMAC-SHA256,
authenticated) is derived from `HERALD_SECRET_KEY` with HKDF-SHA256 and a purpose string, so the
same secret never serves two purposes: `signing_key` derives independent HMAC keys (for example
for the Slack install links' `state`).

A stored value without the prefix is a plaintext token (rows written before encryption, or by a
Herald without `HERALD_SECRET_KEY`): it is read as it is. Without `HERALD_SECRET_KEY` new tokens
are stored in plaintext too, and the server logs a warning at start-up (`warn_if_plaintext`).
Changing `HERALD_SECRET_KEY` makes the stored tokens unreadable: reconnect the workspaces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

log = logging.getLogger(__name__)

PREFIX = "enc:v1:"
_SALT = b"herald/secret-key/v1"
_TOKEN_PURPOSE = "bot-token-encryption/v1"
_warned = False


class TokenDecryptError(Exception):
    """A stored token cannot be decrypted (no key, or a different key than it was sealed with)."""


def _secret_text(secret_key: str | SecretStr | None) -> str | None:
    if isinstance(secret_key, SecretStr):
        secret_key = secret_key.get_secret_value()
    return secret_key or None


def derive_key(secret_key: str | SecretStr, purpose: str, length: int = 32) -> bytes:
    """`length` bytes for `purpose`, derived from the secret with HKDF-SHA256."""
    secret = _secret_text(secret_key)
    if not secret:
        raise ValueError("derive_key needs a secret key")
    return _derive(secret, purpose, length)


@lru_cache(maxsize=32)
def _derive(secret: str, purpose: str, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT,
                info=f"herald:{purpose}".encode()).derive(secret.encode("utf-8"))


def signing_key(secret_key: str | SecretStr, purpose: str) -> bytes:
    """An HMAC-SHA256 key for `purpose` (e.g. "slack-oauth-state/v1")."""
    return derive_key(secret_key, f"hmac:{purpose}")


def sign(key: bytes, message: str) -> str:
    """URL-safe HMAC-SHA256 of `message` (no padding)."""
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(key: bytes, message: str, signature: str) -> bool:
    # as bytes: compare_digest refuses str holding non-ASCII, which a forged signature may
    return hmac.compare_digest(sign(key, message).encode(), signature.encode())


def token_fingerprint(token: str | None) -> str:
    """A short hash that tells one bot token from another without revealing it ("" for none).
    Bot tokens are long random strings, so an unsalted SHA-256 cannot be reversed or guessed."""
    if not token:
        return ""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


class TokenCipher:
    """Seals tokens for the database and opens them again. Without a key it seals nothing."""

    def __init__(self, secret_key: str | SecretStr | None) -> None:
        secret = _secret_text(secret_key)
        self._fernet = (Fernet(base64.urlsafe_b64encode(derive_key(secret, _TOKEN_PURPOSE)))
                        if secret else None)

    @property
    def encrypts(self) -> bool:
        return self._fernet is not None

    def seal(self, token: str) -> str:
        """The value to store for `token`: encrypted when there is a key, else the token itself."""
        if not token or self._fernet is None or is_sealed(token):
            return token
        return PREFIX + self._fernet.encrypt(token.encode("utf-8")).decode("ascii")

    def open(self, stored: str) -> str:
        """The token a stored value holds; unprefixed values are plaintext and returned as they are."""
        if not is_sealed(stored):
            return stored
        if self._fernet is None:
            raise TokenDecryptError("the token is encrypted but HERALD_SECRET_KEY is not set")
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise TokenDecryptError(
                "the token cannot be decrypted: HERALD_SECRET_KEY differs from the one it was stored with") from None


def environment_cipher() -> TokenCipher:
    """The cipher for `HERALD_SECRET_KEY` as the environment (and `.env`) set it: for code that
    runs without a server's settings, such as the `herald` command line."""
    from config.settings import load_settings

    return _cipher_for(_secret_text(load_settings().secret_key))


@lru_cache(maxsize=8)
def _cipher_for(secret: str | None) -> TokenCipher:
    return TokenCipher(secret)


def cipher_for(secret_key: str | SecretStr | None) -> TokenCipher:
    return _cipher_for(_secret_text(secret_key))


def warn_if_plaintext(cipher: TokenCipher) -> None:
    """Log, once per process, that tokens will be stored unencrypted."""
    global _warned
    if cipher.encrypts or _warned:
        return
    _warned = True
    log.warning("HERALD_SECRET_KEY is not set: Slack bot tokens are stored in the database in plaintext. "
                "Set it (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`) to encrypt them; "
                "existing plaintext tokens keep working.")
