"""Encryption at rest: a manager's data encryption key (DEK), the unlock key
that wraps it when autolock is on, and the keys that protect backups.

Where each key is used (docs/security.md has the whole picture):

- Every manager has its own DEK (AES-256-GCM). Everything a manager keeps on
  disk that holds cluster secrets is ciphertext under it: the Raft journal
  records, term file and snapshot (manager/raftlog.py), the Raft secret file
  and the node's TLS key (node/files.py). Encrypting at the storage layer
  protects every sensitive field there is and will be (the CA key, join
  tokens, the Raft secret, service secrets, registry credentials) without each
  feature sealing its own fields.
- The DEK lives in the manager's state directory (`DEK_FILE`). Without
  autolock it is stored in the clear, as Docker Swarm does: the encryption
  then only keeps secrets out of copies of the Raft files alone. With autolock
  it is stored wrapped by a key-encryption key derived from the cluster's
  unlock key (`SWLKEY-1-...`), so a stolen disk reveals nothing without that
  key, and a restarted manager stays locked until given it.
- Backups are ciphertext under a key derived from the unlock key (autolock
  on), a random backup key printed once (`SWLBKP-1-...`), or a passphrase
  the user chooses (scrypt).

Ciphertext layout (`DataKey.encrypt`): 12-byte random nonce, then AES-GCM
ciphertext and its 16-byte tag. Callers bind each ciphertext to where it
belongs with the associated data (a journal record's index and term, the
file's kind), so a record cannot be moved or replayed elsewhere unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from swarmlet import errors

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES

# A sealed blob in a file of its own: magic, then DataKey.encrypt's layout.
SEAL_MAGIC = b"SWLSEAL1"

DEK_FILE = "dek.json"
_DEK_FORMAT = "swarmlet-dek"
_DEK_AAD = b"swarmlet-dek-wrap-v1"

UNLOCK_KEY_PREFIX = "SWLKEY-1-"
BACKUP_KEY_PREFIX = "SWLBKP-1-"
_KEY_CHARS = 52  # 32 bytes in base32 without padding

# scrypt for backup passphrases: ~0.1 s and 32 MiB here, per guess.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
MIN_PASSPHRASE = 12


class SealError(errors.FailedPrecondition):
    """Ciphertext that does not decrypt: the wrong key, or damaged data."""


class Locked(errors.FailedPrecondition):
    """The DEK is wrapped by the unlock key and none was given."""


class InvalidUnlockKey(errors.Invalid):
    """The key given does not unwrap this manager's DEK."""


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


class DataKey:
    """An AES-256-GCM key: a manager's DEK, or a key derived for a backup."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        self._aead = AESGCM(key)

    @classmethod
    def generate(cls) -> DataKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @property
    def raw(self) -> bytes:
        """The key itself: only for writing the DEK file."""
        return self._key

    def encrypt(self, data: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, aad)

    def decrypt(self, blob: bytes | memoryview, aad: bytes = b"") -> bytes:
        blob = bytes(blob)
        if len(blob) < OVERHEAD:
            raise SealError("the ciphertext is too short")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise SealError("it does not decrypt with this key (another key, or damaged data)") from None

    def seal(self, data: bytes, aad: bytes) -> bytes:
        """A self-describing sealed blob, for a file of its own."""
        return SEAL_MAGIC + self.encrypt(data, aad)

    def unseal(self, blob: bytes, aad: bytes) -> bytes:
        if not is_sealed(blob):
            raise SealError("not a sealed swarmlet file")
        return self.decrypt(memoryview(blob)[len(SEAL_MAGIC) :], aad)


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(SEAL_MAGIC)


# ---------------------------------------------------------------- keys users hold


def _new_key(prefix: str) -> str:
    return prefix + base64.b32encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


def new_unlock_key() -> str:
    """`SWLKEY-1-<52 base32 characters>`: 256 random bits."""
    return _new_key(UNLOCK_KEY_PREFIX)


def new_backup_key() -> str:
    return _new_key(BACKUP_KEY_PREFIX)


def parse_key(text: str, prefix: str, what: str) -> bytes:
    """The 32 bytes of an unlock or backup key; errors.Invalid naming what is
    wrong (keys are copy-pasted by humans)."""
    text = text.strip()
    if not text.startswith(prefix):
        raise errors.Invalid(f"invalid {what}: it must start with {prefix}")
    body = text[len(prefix) :]
    if len(body) != _KEY_CHARS:
        raise errors.Invalid(f"invalid {what}: expected {_KEY_CHARS} characters after {prefix}, got {len(body)}")
    try:
        raw = base64.b32decode(body.upper() + "====")
    except (binascii.Error, ValueError):
        raise errors.Invalid(f"invalid {what}: not base32 after {prefix}") from None
    return raw[:KEY_BYTES]


def key_encryption_key(unlock_key: str) -> DataKey:
    """The key that wraps DEKs, from the cluster's unlock key (random, so a
    fast KDF is enough)."""
    return DataKey(_hkdf(parse_key(unlock_key, UNLOCK_KEY_PREFIX, "unlock key"), b"swarmlet-unlock-kek-v1"))


# ---------------------------------------------------------------- the DEK file


def dek_file_bytes(dek: DataKey, unlock_key: str | None) -> bytes:
    """The DEK file's content: the key in the clear, or wrapped by the key
    derived from `unlock_key` (autolock)."""
    doc: dict[str, Any] = {"format": _DEK_FORMAT, "version": 1}
    if unlock_key:
        doc["wrapped"] = True
        doc["key"] = base64.b64encode(key_encryption_key(unlock_key).encrypt(dek.raw, _DEK_AAD)).decode()
    else:
        doc["wrapped"] = False
        doc["key"] = base64.b64encode(dek.raw).decode()
    return json.dumps(doc, sort_keys=True).encode() + b"\n"


def _dek_doc(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != _DEK_FORMAT or doc.get("version") != 1:
            raise ValueError("format")
        if not isinstance(doc.get("wrapped"), bool) or not isinstance(doc.get("key"), str):
            raise ValueError("fields")
        return doc
    except (ValueError, UnicodeDecodeError):
        raise SealError("not a swarmlet data key file (damaged?)") from None


def dek_wrapped(raw: bytes) -> bool:
    """True when the DEK file needs the unlock key (the manager is locked)."""
    return bool(_dek_doc(raw)["wrapped"])


def read_dek_file(raw: bytes, unlock_key: str | None = None) -> DataKey:
    """The DEK in a DEK file. Locked if it is wrapped and no key is given;
    InvalidUnlockKey if the key does not unwrap it."""
    doc = _dek_doc(raw)
    try:
        blob = base64.b64decode(doc["key"], validate=True)
    except (binascii.Error, ValueError):
        raise SealError("the data key file is damaged (bad base64)") from None
    if not doc["wrapped"]:
        return DataKey(blob)
    if not unlock_key:
        raise Locked("this manager is locked (autolock): it needs the swarm's unlock key")
    kek = key_encryption_key(unlock_key)
    try:
        return DataKey(kek.decrypt(blob, _DEK_AAD))
    except SealError:
        raise InvalidUnlockKey(
            "invalid unlock key: it does not unlock this manager (if the key was rotated while this manager was down, "
            "use the previous one)"
        ) from None


# ---------------------------------------------------------------- backups

KIND_UNLOCK = "unlock-key"
KIND_BACKUP = "backup-key"
KIND_PASSPHRASE = "passphrase"


def backup_cipher(kind: str, secret: str, salt: bytes) -> DataKey:
    """The key a backup is encrypted with, from what the user holds: the
    swarm's unlock key, a backup key, or a passphrase (scrypt, salted)."""
    if kind == KIND_UNLOCK:
        return DataKey(_hkdf(parse_key(secret, UNLOCK_KEY_PREFIX, "unlock key"), b"swarmlet-backup-v1" + salt))
    if kind == KIND_BACKUP:
        return DataKey(_hkdf(parse_key(secret, BACKUP_KEY_PREFIX, "backup key"), b"swarmlet-backup-v1" + salt))
    if kind == KIND_PASSPHRASE:
        if len(secret) < MIN_PASSPHRASE:
            raise errors.Invalid(f"a backup passphrase must be at least {MIN_PASSPHRASE} characters long")
        kdf = Scrypt(salt=salt, length=KEY_BYTES, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
        return DataKey(kdf.derive(secret.encode()))
    raise errors.Invalid(f"unknown backup key kind {kind!r}")


def key_kind(secret: str) -> str:
    """What a user-given backup secret is, by its prefix."""
    s = secret.strip()
    if s.startswith(UNLOCK_KEY_PREFIX):
        return KIND_UNLOCK
    if s.startswith(BACKUP_KEY_PREFIX):
        return KIND_BACKUP
    return KIND_PASSPHRASE
