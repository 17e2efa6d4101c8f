from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from ml_connector.core.db import Database
from ml_connector.core.models import SecretRow, TokenRow
from ml_connector.core.token_store import DbTokenStore
from ml_connector.core.vault import (
    KEY_FILE,
    PENDING_KEY_FILE,
    MasterKey,
    Secret,
    Vault,
    VaultError,
    key_id_of,
    known_secret_values,
)
from tests.support.tokens import stored_token, token_ciphertext

pytestmark = pytest.mark.usefixtures("no_master_key_env")

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def vault(db: Database, data_dir: Path) -> Vault:
    return Vault(db, MasterKey.load(data_dir))


def test_set_get_list_delete(vault: Vault) -> None:
    vault.set("sap_ecc_password", "s3cret-value")
    vault.set("ramp_client_secret", "other-value")
    assert vault.get("sap_ecc_password") == "s3cret-value"
    vault.set("sap_ecc_password", "changed-value")
    assert vault.get("sap_ecc_password") == "changed-value"
    infos = vault.list()
    assert [i.name for i in infos] == ["ramp_client_secret", "sap_ecc_password"]
    assert {i.key_id for i in infos} == {vault.key.key_id}
    assert all(i.updated_at is not None for i in infos)
    vault.delete("ramp_client_secret")
    assert [i.name for i in vault.list()] == ["sap_ecc_password"]
    with pytest.raises(VaultError, match="not set"):
        vault.delete("ramp_client_secret")


def test_values_are_encrypted_at_rest(vault: Vault, db: Database) -> None:
    vault.set("pw", "plain-text-value")
    with db.session() as s:
        row = s.get(SecretRow, "pw")
        assert row is not None
        assert b"plain-text-value" not in row.ciphertext
        assert len(row.nonce) == 12 and row.key_id == vault.key.key_id


def test_missing_secret_names_it_and_the_command(vault: Vault) -> None:
    with pytest.raises(VaultError) as ei:
        vault.get("sap_ecc_password")
    assert "sap_ecc_password" in str(ei.value)
    assert "ml-connector secrets set sap_ecc_password" in str(ei.value)


def test_invalid_names_rejected(vault: Vault) -> None:
    for bad in ["", "has space", "x" * 201, "semi;colon"]:
        with pytest.raises(VaultError, match="invalid secret name"):
            vault.set(bad, "value")


def test_ciphertexts_cannot_be_swapped_between_names(vault: Vault, db: Database) -> None:
    vault.set("a", "value-of-a")
    vault.set("b", "value-of-b")
    with db.session() as s:
        ra, rb = s.get(SecretRow, "a"), s.get(SecretRow, "b")
        assert ra is not None and rb is not None
        rb.nonce, rb.ciphertext = ra.nonce, ra.ciphertext
    with pytest.raises(VaultError, match="secret b could not be decrypted"):
        vault.get("b")


def test_wrong_key_gives_clear_error_without_value(db: Database, data_dir: Path) -> None:
    v1 = Vault(db, MasterKey.load(data_dir))
    v1.set("pw", "the-value-123")
    other = MasterKey.generate()
    v2 = Vault(db, other)
    with pytest.raises(VaultError) as ei:
        v2.get("pw")
    msg = str(ei.value)
    expected = f"secret pw was encrypted with key {v1.key.key_id}, the current master key is {other.key_id}"
    assert expected in msg
    assert "the-value-123" not in msg


def test_get_registers_value_for_redaction(vault: Vault, db: Database, data_dir: Path) -> None:
    vault.set("reg", "registered-value-xyz")
    fresh = Vault(db, MasterKey.load(data_dir))
    assert fresh.get("reg") == "registered-value-xyz"
    assert "registered-value-xyz" in known_secret_values()


def test_reprs_never_show_values(vault: Vault) -> None:
    vault.set("pw", "repr-secret-value")
    s = vault.get_secret("pw")
    assert isinstance(s, Secret) and s.reveal() == "repr-secret-value"
    for text in (repr(s), str(s), repr(vault), repr(vault.key), f"{s}", repr([s])):
        assert "repr-secret-value" not in text
    assert vault.key.raw.hex() not in repr(vault.key)


# ----------------------------------------------------------------------------- key sources


@posix_only
def test_key_file_created_with_mode_0600(data_dir: Path) -> None:
    key = MasterKey.load(data_dir)
    path = data_dir / KEY_FILE
    assert key.source == "file" and key.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # loading again gives the same key
    assert MasterKey.load(data_dir).key_id == key.key_id
    assert key.key_id == key_id_of(key.raw) and len(key.key_id) == 16


@posix_only
def test_group_readable_key_file_refused(data_dir: Path) -> None:
    MasterKey.load(data_dir)
    path = data_dir / KEY_FILE
    path.chmod(0o644)
    with pytest.raises(VaultError) as ei:
        MasterKey.load(data_dir)
    assert "0644" in str(ei.value) and "chmod 600" in str(ei.value) and str(path) in str(ei.value)


def test_no_create(data_dir: Path) -> None:
    with pytest.raises(VaultError, match="no master key"):
        MasterKey.load(data_dir, create=False)


def test_env_key_takes_precedence(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file_key = MasterKey.load(data_dir)
    env_key = MasterKey.generate()
    monkeypatch.setenv("MLC_MASTER_KEY", env_key.encode())
    loaded = MasterKey.load(data_dir)
    assert loaded.source == "env" and loaded.key_id == env_key.key_id != file_key.key_id
    monkeypatch.setenv("MLC_MASTER_KEY", env_key.raw.hex())
    assert MasterKey.load(data_dir).key_id == env_key.key_id


def test_env_key_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = MasterKey.generate()
    monkeypatch.setenv("MLC_MASTER_KEY", env_key.encode().rstrip("="))
    assert MasterKey.load(tmp_path / "nodir").key_id == env_key.key_id
    assert not (tmp_path / "nodir").exists()


@pytest.mark.parametrize("bad", ["short", "zz" * 32, "A" * 60])
def test_bad_env_key_rejected_without_echo(data_dir: Path, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("MLC_MASTER_KEY", bad)
    with pytest.raises(VaultError, match="MLC_MASTER_KEY") as ei:
        MasterKey.load(data_dir)
    assert bad not in str(ei.value)


# ----------------------------------------------------------------------------- rotation


@posix_only
def test_rotate_file_key(db: Database, data_dir: Path) -> None:
    vault = Vault(db, MasterKey.load(data_dir))
    vault.set("a", "value-a-1")
    vault.set("b", "value-b-2")
    stored_token(db, vault, "ramp", "access-token-abc")
    old = vault.key
    new = MasterKey.generate()

    assert vault.rotate_key(new) == 3

    assert vault.key.key_id == new.key_id and vault.key.source == "file"
    path = data_dir / KEY_FILE
    assert MasterKey.read_file(path).key_id == new.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (data_dir / PENDING_KEY_FILE).exists()
    assert not list(data_dir.glob("master.key.old-*"))
    # new key decrypts everything, in this and in a fresh vault
    assert vault.get("a") == "value-a-1"
    fresh = Vault(db, MasterKey.load(data_dir))
    assert fresh.get("b") == "value-b-2"
    tok = DbTokenStore(db, fresh).load("ramp")
    assert tok is not None and tok.access_token == "access-token-abc"
    with db.session() as s:
        assert {r.key_id for r in s.scalars(select(SecretRow))} == {new.key_id}
        assert {r.key_id for r in s.scalars(select(TokenRow))} == {new.key_id}
    # the old key can no longer decrypt (a copy not tied to the key file, which now holds the new key)
    detached_old = MasterKey(old.raw, "env")
    expected = f"encrypted with key {new.key_id}, the current master key is {old.key_id}"
    with pytest.raises(VaultError, match=expected):
        Vault(db, detached_old).get("a")
    with pytest.raises(VaultError):
        Vault(db, detached_old).decrypt("token:ramp", old.key_id, *token_ciphertext(db, "ramp"))


def test_rotate_env_key(db: Database, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = MasterKey.generate()
    monkeypatch.setenv("MLC_MASTER_KEY", env_key.encode())
    vault = Vault(db, MasterKey.load(data_dir))
    vault.set("a", "value-a-1")
    new = MasterKey.generate()
    assert vault.rotate_key(new) == 1
    assert not (data_dir / KEY_FILE).exists()  # nothing written for an env key
    assert vault.get("a") == "value-a-1"
    with pytest.raises(VaultError, match="encrypted with key"):
        Vault(db, env_key).get("a")


def test_rotate_is_all_or_nothing(db: Database, data_dir: Path) -> None:
    vault = Vault(db, MasterKey.load(data_dir))
    vault.set("a", "value-a-1")
    # a row under a foreign key: rotation must refuse and change nothing
    stranger = Vault(db, MasterKey.generate())
    stranger.set("z", "value-z-9")
    old_id = vault.key.key_id
    with pytest.raises(VaultError, match="nothing was rotated"):
        vault.rotate_key(MasterKey.generate())
    assert vault.key.key_id == old_id
    assert MasterKey.load(data_dir).key_id == old_id
    assert not (data_dir / PENDING_KEY_FILE).exists()
    assert vault.get("a") == "value-a-1"
    with db.session() as s:
        row = s.get(SecretRow, "a")
        assert row is not None and row.key_id == old_id


def test_crash_after_commit_is_completed_on_next_read(db: Database, data_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    vault = Vault(db, MasterKey.load(data_dir))
    vault.set("a", "value-a-1")
    new = MasterKey.generate()

    def crash(_data_dir: object) -> Path:
        raise SystemExit("crash before installing the key file")

    monkeypatch.setattr(MasterKey, "install_pending", staticmethod(crash))
    with pytest.raises(SystemExit):
        vault.rotate_key(new)
    monkeypatch.undo()
    # the DB is under the new key, the file still holds the old one, the new one is pending
    assert (data_dir / PENDING_KEY_FILE).exists()
    restarted = Vault(db, MasterKey.load(data_dir))
    assert restarted.get("a") == "value-a-1"
    assert restarted.key.key_id == new.key_id
    assert MasterKey.load(data_dir).key_id == new.key_id
    assert not (data_dir / PENDING_KEY_FILE).exists()


def test_other_process_rotation_is_picked_up(db: Database, data_dir: Path) -> None:
    a = Vault(db, MasterKey.load(data_dir))
    b = Vault(db, MasterKey.load(data_dir))
    a.set("x", "value-x-1")
    a.rotate_key(MasterKey.generate())
    assert b.get("x") == "value-x-1"  # b re-reads master.key and adopts the new key
    assert b.key.key_id == a.key.key_id


def test_write_keeps_mode_and_replaces(data_dir: Path) -> None:
    MasterKey.load(data_dir)
    new = MasterKey.generate()
    path = new.write(data_dir)
    assert MasterKey.read_file(path).key_id == new.key_id
    if os.name != "nt":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_encrypt_decrypt_for_other_stores(vault: Vault) -> None:
    key_id, nonce, ct = vault.encrypt("token:ramp", "payload-1234")
    assert key_id == vault.key.key_id
    assert vault.decrypt("token:ramp", key_id, nonce, ct) == "payload-1234"
    with pytest.raises(VaultError):
        vault.decrypt("token:other", key_id, nonce, ct)


def test_complete_rotation_settles_staged_keys(db: Database, data_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    vault = Vault(db, MasterKey.load(data_dir))
    vault.set("a", "value-a-1")
    # staged but never committed: discarded
    MasterKey.generate().write_pending(data_dir)
    assert vault.complete_rotation() is False
    assert not (data_dir / PENDING_KEY_FILE).exists()
    # committed but not installed: installed
    new = MasterKey.generate()
    def fail(_data_dir: object) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(MasterKey, "install_pending", staticmethod(fail))
    with pytest.raises(OSError):
        vault.rotate_key(new)
    monkeypatch.undo()
    restarted = Vault(db, MasterKey.load(data_dir))
    assert restarted.key.key_id != new.key_id
    assert restarted.complete_rotation() is True
    assert restarted.key.key_id == new.key_id == MasterKey.load(data_dir).key_id
    # and a further rotation works
    assert restarted.rotate_key(MasterKey.generate()) == 1
    assert restarted.get("a") == "value-a-1"
