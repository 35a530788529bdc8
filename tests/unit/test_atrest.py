"""Encryption at rest (swarmlet/atrest.py): data keys, the DEK file with and
without autolock, unlock and backup keys."""

from __future__ import annotations

import pytest

from swarmlet import atrest, errors
from swarmlet.atrest import DataKey


def test_a_data_key_round_trips_and_binds_its_associated_data() -> None:
    k = DataKey.generate()
    blob = k.encrypt(b"the CA key", b"record 7")
    assert b"the CA key" not in blob and len(blob) == len(b"the CA key") + atrest.OVERHEAD
    assert k.decrypt(blob, b"record 7") == b"the CA key"
    with pytest.raises(atrest.SealError):
        k.decrypt(blob, b"record 8")  # moved elsewhere: refused
    with pytest.raises(atrest.SealError):
        DataKey.generate().decrypt(blob, b"record 7")  # another key
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(atrest.SealError):
        k.decrypt(flipped, b"record 7")
    # Two encryptions of the same data differ (random nonces).
    assert k.encrypt(b"x") != k.encrypt(b"x")
    sealed = k.seal(b"secret", b"file")
    assert atrest.is_sealed(sealed) and k.unseal(sealed, b"file") == b"secret"


def test_the_dek_file_is_in_the_clear_without_autolock_and_wrapped_with_it() -> None:
    dek = DataKey.generate()
    plain = atrest.dek_file_bytes(dek, None)
    assert not atrest.dek_wrapped(plain)
    assert atrest.read_dek_file(plain).raw == dek.raw

    key = atrest.new_unlock_key()
    wrapped = atrest.dek_file_bytes(dek, key)
    assert atrest.dek_wrapped(wrapped)
    import base64

    assert base64.b64encode(dek.raw) not in wrapped and dek.raw not in wrapped
    with pytest.raises(atrest.Locked):
        atrest.read_dek_file(wrapped)
    with pytest.raises(atrest.InvalidUnlockKey, match="invalid unlock key"):
        atrest.read_dek_file(wrapped, atrest.new_unlock_key())
    assert atrest.read_dek_file(wrapped, key).raw == dek.raw
    with pytest.raises(atrest.SealError, match="not a swarmlet data key file"):
        atrest.read_dek_file(b"{garbage")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("SWMKEY-1-abc", "must start with SWLKEY-1-"),
        ("SWLKEY-1-short", "expected 52 characters"),
        ("SWLKEY-1-" + "!" * 52, "not base32"),
    ],
)
def test_a_malformed_unlock_key_names_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(errors.Invalid, match=words):
        atrest.parse_key(text, atrest.UNLOCK_KEY_PREFIX, "unlock key")


def test_keys_are_256_random_bits_and_parse_back() -> None:
    a, b = atrest.new_unlock_key(), atrest.new_unlock_key()
    assert a != b and a.startswith("SWLKEY-1-") and len(atrest.parse_key(a, "SWLKEY-1-", "k")) == 32
    assert atrest.key_kind(a) == atrest.KIND_UNLOCK
    assert atrest.key_kind(atrest.new_backup_key()) == atrest.KIND_BACKUP
    assert atrest.key_kind("correct horse battery staple") == atrest.KIND_PASSPHRASE


def test_backup_ciphers_depend_on_the_salt_and_refuse_a_short_passphrase() -> None:
    key = atrest.new_backup_key()
    one = atrest.backup_cipher(atrest.KIND_BACKUP, key, b"1" * 16)
    two = atrest.backup_cipher(atrest.KIND_BACKUP, key, b"2" * 16)
    assert one.raw != two.raw
    p = atrest.backup_cipher(atrest.KIND_PASSPHRASE, "correct horse battery", b"s" * 16)
    assert p.raw == atrest.backup_cipher(atrest.KIND_PASSPHRASE, "correct horse battery", b"s" * 16).raw
    with pytest.raises(errors.Invalid, match="at least 12 characters"):
        atrest.backup_cipher(atrest.KIND_PASSPHRASE, "short", b"s" * 16)
