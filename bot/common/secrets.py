"""Secrets at rest and signed values, all keyed by `HERALD_SECRET_KEY`.

Bot tokens (and the other values in `bot.core.compliance.sealed_values`) are stored as
``enc:v1:<Fernet token>``. The Fernet key (AES-128-CBC + HMAC-SHA256, authenticated) is derived
from `HERALD_SECRET_KEY` with HKDF-SHA256 and a purpose string, so the same secret never serves
two purposes: `signing_key` derives independent HMAC keys (for example for the Slack install
links' `state`).

A stored value without the prefix is a plaintext token (rows written before encryption, or by a
Herald without `HERALD_SECRET_KEY`): it is read as it is. Without `HERALD_SECRET_KEY` new tokens
are stored in plaintext too, and the server logs a warning at start-up (`warn_if_plaintext`).

Rotating the key: the old key goes to `HERALD_SECRET_KEY_PREVIOUS` (one or a few). Everything is
then sealed and signed with `HERALD_SECRET_KEY` alone, and opened or verified with it or any
previous key (Fernet's `MultiFernet`; `signing_keys` + `verify_any`), so stored tokens and links
handed out before the change keep working; `herald secrets rotate` re-seals the stored values
under the current key, after which the previous key can be dropped. A value sealed with a key
that is neither is unreadable: restore that key, or reconnect the workspace.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from enum import Enum
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
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


class SealState(str, Enum):
    """How a stored value stands against the configured keys."""

    EMPTY = "empty"
    PLAINTEXT = "plaintext"  # stored unencrypted (before encryption, or without a key)
    CURRENT = "current"  # sealed with HERALD_SECRET_KEY
    PREVIOUS = "previous"  # sealed with a key of HERALD_SECRET_KEY_PREVIOUS: `herald secrets rotate`
    UNREADABLE = "unreadable"  # sealed with no configured key


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


def signing_keys(secret_key: str | SecretStr, purpose: str,
                 previous: Iterable[str | SecretStr] = ()) -> tuple[bytes, ...]:
    """The HMAC keys for `purpose`: the current key's first (it signs), then the previous keys'
    (they still verify, while a key is being rotated)."""
    secrets = [_secret_text(secret_key), *(_secret_text(p) for p in previous)]
    return tuple(signing_key(s, purpose) for s in dict.fromkeys(s for s in secrets if s))


def sign(key: bytes, message: str) -> str:
    """URL-safe HMAC-SHA256 of `message` (no padding)."""
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(key: bytes, message: str, signature: str) -> bool:
    # as bytes: compare_digest refuses str holding non-ASCII, which a forged signature may
    return hmac.compare_digest(sign(key, message).encode(), signature.encode())


def verify_any(keys: Iterable[bytes], message: str, signature: str) -> bool:
    """Whether `signature` is `message`'s under one of `keys` (the current and previous keys)."""
    return any(verify(key, message, signature) for key in keys)


def token_fingerprint(token: str | None) -> str:
    """A short hash that tells one bot token from another without revealing it ("" for none).
    Bot tokens are long random strings, so an unsalted SHA-256 cannot be reversed or guessed."""
    if not token:
        return ""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(secret, _TOKEN_PURPOSE)))


class TokenCipher:
    """Seals tokens for the database with the current key and opens them again with it or a
    previous one. Without a key it seals nothing."""

    def __init__(self, secret_key: str | SecretStr | None, previous: Iterable[str | SecretStr] = ()) -> None:
        secret = _secret_text(secret_key)
        older = [p for p in dict.fromkeys(_secret_text(p) for p in previous) if p and p != secret]
        self._current = _fernet(secret) if secret else None
        self._previous = tuple(_fernet(p) for p in older) if secret else ()
        self._fernet = MultiFernet([self._current, *self._previous]) if self._current else None

    @property
    def encrypts(self) -> bool:
        return self._fernet is not None

    @property
    def has_previous(self) -> bool:
        return bool(self._previous)

    def state(self, stored: str) -> SealState:
        """Which configured key, if any, `stored` is sealed with (the current one is tried first)."""
        if not stored:
            return SealState.EMPTY
        if not is_sealed(stored):
            return SealState.PLAINTEXT
        body = stored[len(PREFIX):].encode("ascii", "replace")
        if self._current is not None and _opens(self._current, body):
            return SealState.CURRENT
        if any(_opens(fernet, body) for fernet in self._previous):
            return SealState.PREVIOUS
        return SealState.UNREADABLE

    def reseal(self, stored: str) -> str:
        """`stored` sealed with the current key: re-encrypted when a previous key sealed it, sealed
        when it is plaintext, unchanged when it already is. TokenDecryptError when no key opens it."""
        if not self.encrypts or self.state(stored) in (SealState.EMPTY, SealState.CURRENT):
            return stored
        return self.seal(self.open(stored))

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
                "the token cannot be decrypted: it was stored with a key that is neither HERALD_SECRET_KEY "
                "nor one of HERALD_SECRET_KEY_PREVIOUS") from None


def _opens(fernet: Fernet, body: bytes) -> bool:
    try:
        fernet.decrypt(body)
    except (InvalidToken, ValueError):
        return False
    return True


def environment_cipher() -> TokenCipher:
    """The cipher for `HERALD_SECRET_KEY` (and `HERALD_SECRET_KEY_PREVIOUS`) as the environment
    (and `.env`) set it: for code that runs without a server's settings, such as the `herald`
    command line."""
    from config.settings import load_settings

    settings = load_settings()
    return cipher_for(settings.secret_key, settings.previous_secret_keys)


@lru_cache(maxsize=8)
def _cipher_for(secret: str | None, previous: tuple[str, ...]) -> TokenCipher:
    return TokenCipher(secret, previous)


def cipher_for(secret_key: str | SecretStr | None, previous: Sequence[str] = ()) -> TokenCipher:
    """The cipher for a current key and the previous keys that still open what they sealed."""
    return _cipher_for(_secret_text(secret_key), tuple(previous))


def warn_if_plaintext(cipher: TokenCipher) -> None:
    """Log, once per process, that tokens will be stored unencrypted."""
    global _warned
    if cipher.encrypts or _warned:
        return
    _warned = True
    log.warning("HERALD_SECRET_KEY is not set: Slack bot tokens are stored in the database in plaintext. "
                "Set it (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`) to encrypt them; "
                "existing plaintext tokens keep working.")
