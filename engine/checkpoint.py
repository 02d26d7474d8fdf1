"""Engine checkpoints on disk: the core snapshot plus where in the command stream it stands.

File layout: MAGIC, then a 32-byte blake2b digest of the body, then the body (msgpack of
`Checkpoint`). Files are written to a temporary name, fsynced, renamed and the directory
fsynced, so a crash leaves either the old file set or the new one; a file whose digest does
not match (torn or corrupt) is skipped and the previous checkpoint is used.

Several processes may write into one directory at once: a leader's checkpoint child, a
standby's (same host, same DATA_DIR), or a child still finishing after its engine died. A
checkpoint's bytes depend only on the state at its sequence number, so two writers of the
same name write the same bytes; each writes its own temporary file (named with its pid)
and renames it, so no reader ever sees a file mixing two writes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import msgspec

MAGIC = b"OMECKPT1"
DIGEST = 32
KEEP = 3
TMP_SUFFIX = ".tmp"
STORE_ID = "store-id"


class Checkpoint(msgspec.Struct, frozen=True):
    version: int
    seq: int
    last_command_id: str  # Redis stream id of the last command applied
    core: bytes  # engine.snapshot.snapshot() bytes
    state_hash: str = ""  # engine.snapshot.digest_of(core) ("" in files written before it)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Checkpoint)


def store_id(directory: Path) -> str:
    """The identity of this checkpoint directory, created by whichever engine gets there
    first (written aside and linked into place, so it is never seen half written).

    Two engines whose ids are equal read and write the same files (one host with one
    DATA_DIR, or a shared volume): only then may a leader leave its checkpoints to the
    standby, because only then can a restarting leader load what the standby wrote."""
    path = directory / STORE_ID
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{STORE_ID}.{os.getpid()}"
    tmp.write_text(secrets.token_hex(8))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another engine's id won
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def name_of(seq: int) -> str:
    return f"engine-{seq:016d}.ckpt"


def write(directory: Path, checkpoint: Checkpoint) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    body = _encoder.encode(checkpoint)
    path = directory / name_of(checkpoint.seq)
    tmp = directory / f"{path.name}.{os.getpid()}{TMP_SUFFIX}"
    with open(tmp, "wb") as f:
        f.write(MAGIC + hashlib.blake2b(body, digest_size=DIGEST).digest() + body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def remove_orphaned_tmp(directory: Path) -> list[str]:
    """Delete temporary files whose writer is gone (it died mid-write); returns their names.
    A file of a live writer is left alone: it is renamed into place when complete."""
    removed: list[str] = []
    for tmp in directory.glob(f"engine-*.ckpt.*{TMP_SUFFIX}"):
        pid = tmp.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read(path: Path) -> Checkpoint:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path.name}: not a checkpoint")
    digest, body = data[len(MAGIC) : len(MAGIC) + DIGEST], data[len(MAGIC) + DIGEST :]
    if hashlib.blake2b(body, digest_size=DIGEST).digest() != digest:
        raise ValueError(f"{path.name}: checksum mismatch (torn or corrupt)")
    return _decoder.decode(body)


def files(directory: Path) -> list[Path]:
    """Checkpoint files, newest first."""
    return sorted(directory.glob("engine-*.ckpt"), reverse=True)


def load_newest(directory: Path, max_seq: int | None = None) -> tuple[Checkpoint | None, list[str]]:
    """The newest valid checkpoint (at most `max_seq`), and why newer files were skipped."""
    skipped: list[str] = []
    for path in files(directory):
        try:
            found = read(path)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            skipped.append(str(exc))
            continue
        if max_seq is not None and found.seq > max_seq:
            skipped.append(f"{path.name}: ahead of the published events (seq {max_seq})")
            continue
        return found, skipped
    return None, skipped


def prune(directory: Path, keep: int = KEEP) -> list[Checkpoint]:
    """Delete all but the `keep` newest valid checkpoints; returns the kept ones, newest first."""
    kept: list[Checkpoint] = []
    for path in files(directory):
        if len(kept) < keep:
            try:
                kept.append(read(path))
                continue
            except FileNotFoundError:  # another writer's prune got there first
                continue
            except (OSError, ValueError, msgspec.DecodeError):
                pass
        path.unlink(missing_ok=True)
    return kept
