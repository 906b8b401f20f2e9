"""Atomic files and folders: write beside the target, then rename, so a reader sees the old one or the new."""

from __future__ import annotations

import contextlib
import os
import shutil
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


# ------------------------------------------------------------------------------------------ folders
def check_folder_target(
    target: str | os.PathLike[str], force: bool, marker: str, what: str, error: type[EdgennError] = EdgennError
) -> Path:
    """Fail early, with one line, where a `what` folder (one holding `marker`) could not replace `target`:
    a file there, a folder that exists without `force`, or one that holds other things (--force replaces
    only a `what`, never `-o models`). What a killed earlier run left beside it is cleared first."""
    target = Path(target)
    remove_stale_folders(target)
    if target.exists() and not target.is_dir():
        raise error(f"output {str(target)!r} is a file; give a folder path for the {what}")
    if target.exists() and any(target.iterdir()) and not (target / marker).is_file():
        raise error(
            f"output folder {str(target)!r} holds files but no {marker}: it is not a {what}, which is all "
            "--force replaces; give a new folder"
        )
    if target.exists() and not force:
        raise error(f"output folder {str(target)!r} exists; pass --force to replace it")
    if not target.parent.is_dir():
        raise error(f"output's parent folder {str(target.parent)!r} does not exist; create it first")
    return target


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden folder beside `target` to fill; when the block ends without an error it replaces
    `target` (an existing one is moved aside first, and put back if the rename fails).

    A killed process leaves `target` as it was, or absent, and hidden folders named after its pid;
    the next call for the same target removes them, and puts back a target that a kill between the
    two renames left aside.
    """
    target = Path(target)
    remove_stale_folders(target)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent))
    except OSError as exc:
        raise EdgennError(
            f"cannot write in {str(target.parent)!r} ({exc.strerror or exc}); choose another folder or fix its "
            "permissions"
        ) from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700; a finished folder gets the usual mode
        _replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(staging: Path, target: Path) -> None:
    try:
        if not target.exists():
            staging.rename(target)
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent)) / target.name
        target.rename(aside)
        try:
            staging.rename(target)
        except BaseException:
            aside.rename(target)
            raise
        shutil.rmtree(aside.parent, ignore_errors=True)
    except OSError as exc:
        raise EdgennError(f"cannot put {str(target)!r} in place ({exc.strerror or exc}); nothing was changed") from None


def remove_stale_folders(target: str | os.PathLike[str]) -> None:
    """Hidden staging and moved-aside folders of `target` whose process is gone: removed, or put back."""
    target = Path(target)
    for kind in ("staging", "old"):
        prefix = f".{target.name}.{kind}-"
        for folder in target.parent.glob(f"{prefix}*-*"):
            pid = folder.name[len(prefix) :].split("-", 1)[0]
            if not pid.isdigit() or _alive(int(pid)) or not folder.is_dir():
                continue
            old = folder / target.name
            if kind == "old" and old.is_dir() and not target.exists():
                old.rename(target)  # killed between moving the old folder aside and renaming the new one in
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
