"""Encrypted secrets: AES-256-GCM under one master key.

The master key comes from $MLC_MASTER_KEY (urlsafe base64 of 32 bytes, or 64 hex
characters) or else from `<data_dir>/master.key`, created on first use with mode
0600. Each ciphertext is stored with the `key_id` of the key that made it
(first 16 hex characters of SHA-256 of the key), so a wrong or rotated key is
reported as such, and with the secret's name as associated data, so ciphertexts
cannot be swapped between names.

Key rotation (`Vault.rotate_key`), crash-safe order:
  1. the new key is written to `master.key.new` (0600, fsync) when the key is file-based;
  2. every secret and every token is re-encrypted in ONE transaction, committed;
  3. `master.key` is renamed `master.key.old-<timestamp>`, `master.key.new` is
     renamed `master.key`, and the old file is removed.
A crash between 2 and 3 leaves `master.key.new` in place; the vault finds the
matching key there the next time it meets a ciphertext under it and completes
step 3. A key from $MLC_MASTER_KEY is not written anywhere: the caller must show
the new key (`MasterKey.encode()`) to the operator to put in the environment.

Secret values are plain `str` at the API but are never put in reprs or error
messages, and every value read or written is registered for log redaction
(`known_secret_values()`, used by core/redact.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets as _secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from ml_connector.core.db import Database
from ml_connector.core.models import SecretRow, TokenRow, utcnow

MASTER_KEY_ENV = "MLC_MASTER_KEY"
KEY_FILE = "master.key"
PENDING_KEY_FILE = "master.key.new"
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
NONCE_BYTES = 12


class VaultError(Exception):
    """A secret is missing, or cannot be decrypted, or the master key is unusable.
    The message never contains a secret value."""


# --------------------------------------------------------------------------- registry

_MIN_REGISTERED_LEN = 4
_MAX_REGISTERED = 5000
_registry: OrderedDict[str, None] = OrderedDict()
_registry_lock = threading.Lock()
_registry_version = 0


def register_secret_value(value: str | None) -> None:
    """Remember a secret value so that log redaction replaces it (values shorter than
    4 characters are not registered: redacting them would mangle ordinary text)."""
    global _registry_version
    if not value or len(value) < _MIN_REGISTERED_LEN:
        return
    with _registry_lock:
        if value in _registry:
            _registry.move_to_end(value)
            return
        _registry[value] = None
        while len(_registry) > _MAX_REGISTERED:
            _registry.popitem(last=False)
        _registry_version += 1


def known_secret_values() -> frozenset[str]:
    """Every secret value this process has seen (filled by Vault.get/set and token stores)."""
    with _registry_lock:
        return frozenset(_registry)


def registry_version() -> int:
    """Changes whenever `known_secret_values()` changes (lets redaction cache its regex)."""
    return _registry_version


def _clear_registry_for_tests() -> None:
    global _registry_version
    with _registry_lock:
        _registry.clear()
        _registry_version += 1


class Secret:
    """A secret value that does not show itself in repr/str/logs; `.reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret_value(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and _secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


# --------------------------------------------------------------------------- master key


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _parse_key(text: str, where: str) -> bytes:
    t = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", t):
        return bytes.fromhex(t)
    try:
        raw = base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise VaultError(
            f"{where} is not a master key: expected 32 bytes as urlsafe base64 (44 characters) "
            "or 64 hex characters"
        )
    return raw


def _check_mode(path: Path) -> None:
    if os.name == "nt":
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise VaultError(
            f"master key file {path} is readable by group or others (mode {mode:04o}); "
            f"refusing to use it. Restrict it with: chmod 600 {path}"
        )


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (must not exist) with mode 0600 and `data`, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if os.name != "nt":
            os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class MasterKey:
    """A 256-bit master key and where it came from ('env', 'file' or 'generated')."""

    __slots__ = ("_key", "key_id", "path", "source")

    def __init__(self, key: bytes, source: str = "generated", path: Path | None = None) -> None:
        if len(key) != 32:
            raise VaultError("a master key must be 32 bytes (256 bits)")
        self._key = key
        self.key_id = key_id_of(key)
        self.source = source
        self.path = path

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r}, source={self.source!r})"

    @property
    def raw(self) -> bytes:
        return self._key

    def encode(self) -> str:
        """The key as urlsafe base64 (the $MLC_MASTER_KEY format)."""
        return base64.urlsafe_b64encode(self._key).decode("ascii")

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(32), "generated")

    @classmethod
    def parse(cls, text: str, source: str = "env") -> MasterKey:
        where = f"${MASTER_KEY_ENV}" if source == "env" else "the given key"
        return cls(_parse_key(text, where), source)

    @classmethod
    def from_env(cls) -> MasterKey | None:
        value = os.environ.get(MASTER_KEY_ENV)
        return cls.parse(value, "env") if value else None

    @classmethod
    def read_file(cls, path: Path) -> MasterKey:
        """The key in `path`, refusing a file that group or others can read."""
        _check_mode(path)
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise VaultError(f"cannot read master key file {path}: {exc.__class__.__name__}") from None
        return cls(_parse_key(text, f"master key file {path}"), "file", path)

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str], *, create: bool = True) -> MasterKey:
        """$MLC_MASTER_KEY if set, else `<data_dir>/master.key`, created (0600) if missing
        and `create`."""
        env = cls.from_env()
        if env is not None:
            return env
        directory = Path(data_dir)
        path = directory / KEY_FILE
        if path.exists():
            return cls.read_file(path)
        if not create:
            raise VaultError(
                f"no master key: set ${MASTER_KEY_ENV} or create {path} (run `ml-connector init`)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        key = cls.generate()
        key._create_file(path)
        return cls.read_file(path)  # another process may have won the race: use its key

    def _create_file(self, path: Path) -> None:
        """Create `path` holding this key, atomically and only if it does not exist."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        _write_new_file(tmp, (self.encode() + "\n").encode("ascii"))
        try:
            os.link(tmp, path)  # atomic create-if-absent, with the content already in place
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def write(self, data_dir: str | os.PathLike[str]) -> Path:
        """Make this key `<data_dir>/master.key`: stage it as master.key.new, move the
        current file aside to master.key.old-<timestamp> (0600), install the new one
        atomically, then remove the old one. Returns the path of the key file."""
        self.write_pending(data_dir)
        return self.install_pending(data_dir)

    def write_pending(self, data_dir: str | os.PathLike[str]) -> Path:
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        pending = directory / PENDING_KEY_FILE
        if pending.exists():
            existing = MasterKey.read_file(pending)
            if existing.key_id == self.key_id:
                return pending
            raise VaultError(
                f"{pending} exists: an earlier key rotation did not finish (Vault.complete_rotation() "
                "settles it; it runs at the start of every rotation)"
            )
        _write_new_file(pending, (self.encode() + "\n").encode("ascii"))
        _fsync_dir(directory)
        return pending

    @staticmethod
    def install_pending(data_dir: str | os.PathLike[str]) -> Path:
        directory = Path(data_dir)
        pending = directory / PENDING_KEY_FILE
        path = directory / KEY_FILE
        old: Path | None = None
        if path.exists():
            old = directory / f"{KEY_FILE}.old-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            os.replace(path, old)
        os.replace(pending, path)
        _fsync_dir(directory)
        if old is not None:
            old.unlink(missing_ok=True)
        return path

    @staticmethod
    def discard_pending(data_dir: str | os.PathLike[str]) -> None:
        (Path(data_dir) / PENDING_KEY_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------- vault


@dataclass(frozen=True)
class SecretInfo:
    name: str
    key_id: str
    updated_at: datetime


def _check_name(name: str) -> None:
    if not SECRET_NAME_RE.match(name):
        raise VaultError(
            f"invalid secret name {name[:60]!r}: use 1-200 letters, digits, '_', '.', '-'"
        )


class Vault:
    def __init__(self, db: Database, key: MasterKey) -> None:
        self.db = db
        self.key = key
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Vault(key_id={self.key.key_id!r})"

    @classmethod
    def open(cls, db: Database, data_dir: str | os.PathLike[str]) -> Vault:
        """A vault with the master key from $MLC_MASTER_KEY or `<data_dir>/master.key`."""
        return cls(db, MasterKey.load(data_dir))

    # -- primitives, also used by other stores (tokens)

    def encrypt(self, name: str, value: str) -> tuple[str, bytes, bytes]:
        """(key_id, nonce, ciphertext) of `value`, bound to `name`."""
        key = self.key
        nonce = os.urandom(NONCE_BYTES)
        ct = AESGCM(key.raw).encrypt(nonce, value.encode("utf-8"), name.encode("utf-8"))
        return key.key_id, nonce, ct

    def decrypt(self, name: str, key_id: str, nonce: bytes, ct: bytes) -> str:
        key = self._key_for(name, key_id)
        try:
            plain = AESGCM(key.raw).decrypt(nonce, ct, name.encode("utf-8"))
        except InvalidTag:
            raise VaultError(
                f"secret {name} could not be decrypted: authentication failed (the stored value was "
                "altered or belongs to another name)"
            ) from None
        value = plain.decode("utf-8")
        register_secret_value(value)
        return value

    def _key_for(self, name: str, key_id: str) -> MasterKey:
        if key_id == self.key.key_id:
            return self.key
        adopted = self._reload_key(key_id)
        if adopted is not None:
            return adopted
        raise VaultError(
            f"secret {name} was encrypted with key {key_id}, the current master key is "
            f"{self.key.key_id} (wrong ${MASTER_KEY_ENV} or master.key, or a rotation by another "
            "process with a key this process cannot see)"
        )

    def _reload_key(self, key_id: str) -> MasterKey | None:
        """The key file changed under us (rotation in another process, or a rotation that
        crashed before installing master.key.new): adopt the file's key if it matches."""
        if self.key.source != "file" or self.key.path is None:
            return None
        directory = self.key.path.parent
        with self._lock:
            if key_id == self.key.key_id:
                return self.key
            pending = directory / PENDING_KEY_FILE
            if pending.exists():
                cand = MasterKey.read_file(pending)
                if cand.key_id == key_id:
                    MasterKey.install_pending(directory)
                    self.key = MasterKey.read_file(directory / KEY_FILE)
                    return self.key
            path = directory / KEY_FILE
            if path.exists():
                cand = MasterKey.read_file(path)
                if cand.key_id == key_id:
                    self.key = cand
                    return cand
        return None

    # -- named secrets

    def set(self, name: str, value: str) -> None:
        _check_name(name)
        if not isinstance(value, str) or value == "":
            raise VaultError(f"secret {name}: the value must be a non-empty string")
        key_id, nonce, ct = self.encrypt(name, value)
        with self.db.session() as s:
            row = s.get(SecretRow, name)
            if row is None:
                s.add(SecretRow(name=name, key_id=key_id, nonce=nonce, ciphertext=ct))
            else:
                row.key_id, row.nonce, row.ciphertext = key_id, nonce, ct
                row.updated_at = utcnow()
        register_secret_value(value)

    def get(self, name: str) -> str:
        with self.db.sessions() as s:
            row = s.get(SecretRow, name)
            found = None if row is None else (row.key_id, row.nonce, row.ciphertext)
        if found is None:
            raise VaultError(f"secret {name} is not set; set it with: ml-connector secrets set {name}")
        return self.decrypt(name, *found)

    def get_secret(self, name: str) -> Secret:
        """Like get(), wrapped so that it cannot leak through repr or logging."""
        return Secret(self.get(name))

    def exists(self, name: str) -> bool:
        with self.db.sessions() as s:
            return s.get(SecretRow, name) is not None

    def list(self) -> list[SecretInfo]:
        with self.db.sessions() as s:
            rows = s.execute(
                select(SecretRow.name, SecretRow.key_id, SecretRow.updated_at).order_by(SecretRow.name)
            ).all()
        return [SecretInfo(name=n, key_id=k, updated_at=u) for n, k, u in rows]

    def delete(self, name: str) -> None:
        with self.db.session() as s:
            row = s.get(SecretRow, name)
            if row is None:
                raise VaultError(f"secret {name} is not set")
            s.delete(row)

    # -- rotation

    def complete_rotation(self) -> bool:
        """Settle a rotation that crashed around its commit: when master.key.new holds the
        key the stored rows use, install it as master.key (True); when no row uses it,
        the rotation never committed and the staged file is removed (False)."""
        if self.key.source != "file" or self.key.path is None:
            return False
        directory = self.key.path.parent
        pending_path = directory / PENDING_KEY_FILE
        if not pending_path.exists():
            return False
        pending = MasterKey.read_file(pending_path)
        with self.db.sessions() as s:
            used = set(s.scalars(select(SecretRow.key_id).distinct()))
            used |= set(s.scalars(select(TokenRow.key_id).distinct()))
        with self._lock:
            if pending.key_id in used:
                MasterKey.install_pending(directory)
                self.key = MasterKey.read_file(directory / KEY_FILE)
                return True
            MasterKey.discard_pending(directory)
            return False

    def rotate_key(self, new_key: MasterKey) -> int:
        """Re-encrypt every secret and every stored token under `new_key` in one
        transaction; returns how many values were re-encrypted. When the current key
        lives in a file, the new key is staged beside it first and installed as
        master.key after the commit; with $MLC_MASTER_KEY the caller must publish
        `new_key.encode()`."""
        self.complete_rotation()
        if new_key.key_id == self.key.key_id:
            raise VaultError("the new master key is the current one")
        old = self.key
        data_dir = old.path.parent if old.source == "file" and old.path is not None else None
        if data_dir is not None:
            new_key.write_pending(data_dir)
        old_aes, new_aes = AESGCM(old.raw), AESGCM(new_key.raw)

        def reencrypt(name: str, key_id: str, nonce: bytes, ct: bytes) -> tuple[bytes, bytes]:
            if key_id != old.key_id:
                raise VaultError(
                    f"secret {name} was encrypted with key {key_id}, the current master key is "
                    f"{old.key_id}; nothing was rotated"
                )
            try:
                plain = old_aes.decrypt(nonce, ct, name.encode("utf-8"))
            except InvalidTag:
                raise VaultError(
                    f"secret {name} could not be decrypted (authentication failed); nothing was rotated"
                ) from None
            n = os.urandom(NONCE_BYTES)
            return n, new_aes.encrypt(n, plain, name.encode("utf-8"))

        count = 0
        try:
            with self.db.session() as s:
                locking = self.db.dialect == "postgresql"
                q_sec = select(SecretRow)
                q_tok = select(TokenRow)
                if locking:
                    q_sec, q_tok = q_sec.with_for_update(), q_tok.with_for_update()
                for row in s.scalars(q_sec):
                    row.nonce, row.ciphertext = reencrypt(row.name, row.key_id, row.nonce, row.ciphertext)
                    row.key_id = new_key.key_id
                    count += 1
                for trow in s.scalars(q_tok):
                    tname = token_secret_name(trow.connection)
                    trow.nonce, trow.ciphertext = reencrypt(tname, trow.key_id, trow.nonce, trow.ciphertext)
                    trow.key_id = new_key.key_id
                    count += 1
        except BaseException:
            if data_dir is not None:
                MasterKey.discard_pending(data_dir)
            raise
        if data_dir is not None:
            path = MasterKey.install_pending(data_dir)
            self.key = MasterKey.read_file(path)
        else:
            self.key = new_key
        return count


def token_secret_name(connection: str) -> str:
    """The associated-data name under which the token of `connection` is encrypted."""
    return f"token:{connection}"
