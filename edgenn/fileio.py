"""Atomic files: write beside the target, then rename, so a reader sees the old file or the new."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgenn.errors import EdgennError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `target`.

    On any exception the temporary file is removed and the target is left untouched.
    """
    target = check_file_target(target)
    folder = target.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; a finished file gets the usual mode
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _read_umask() -> int:
    # os.umask can only be read by setting it: done once, at import, before any thread writes files
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def check_file_target(
    target: str | os.PathLike[str], what: str = "output", error: type[EdgennError] = EdgennError
) -> Path:
    """Fail early, with one line, where a file could not be written at `target`."""
    target = Path(target)
    if target.is_dir():
        raise error(f"{what} {str(target)!r} is a folder; give a file path")
    if not target.parent.is_dir():
        raise error(f"output folder {str(target.parent)!r} does not exist; create it first")
    return target


def refuse_same_file(output: str | os.PathLike[str], *others: tuple[str, str | os.PathLike[str] | None]) -> None:
    """Refuse to write `output` over a file the command reads or writes as something else."""
    out = Path(output).resolve()
    for what, other in others:
        if other is not None and Path(other).resolve() == out:
            raise EdgennError(f"the output {str(output)!r} is also the {what}; write to another file")


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def ensure_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Create `folder` if needed and prove that files can be written in it, before any work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edgenn-probe-"):
            pass
    except OSError as exc:
        raise EdgennError(
            f"cannot write to output folder {str(folder)!r} ({exc.strerror or exc}); "
            "choose another folder with --out or fix its permissions"
        ) from None
    return folder
