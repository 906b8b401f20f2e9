"""Atomic files and folders: write beside the target, then rename, so a reader sees the old one or the new.

Every temporary file and folder edgenn makes is named after its process and registered while it exists:
SIGTERM removes what is registered (`remove_on_termination`, which the `edgenn` command installs), and
the next write in a folder, or the next scratch folder, removes what a killed process left (its pid is
gone). A full disk, a read-only folder or a refused permission is one line naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from edgenn.errors import EdgennError, WriteError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `target`.

    On any exception the temporary file is removed and the target is left untouched. `size` (bytes, where
    the caller knows it) is the space a full disk's message says is needed.
    """
    target = check_file_target(target)
    remove_stale(target.parent)
    try:
        tmp_path = _temp_file(target.parent, f".{target.name}")
    except OSError as exc:
        raise write_error(exc, target, size) from None
    try:
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; a finished file gets the usual mode
            os.replace(tmp_path, target)
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS or not _names_only(exc, tmp_path, target):
                raise
            written = _file_size(tmp_path)
            _discard(tmp_path)  # before the free space is measured
            raise write_error(exc, target, size, written=written) from None
    finally:
        _discard(tmp_path)


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
    data = text.encode("utf-8")
    with atomic_path(target, size=len(data)) as tmp:
        tmp.write_bytes(data)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target, size=len(data)) as tmp:
        tmp.write_bytes(data)


def ensure_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Create `folder` if needed and prove that files can be written in it, before any work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(exc, folder, folder=True) from None
        raise EdgennError(
            f"cannot write to output folder {str(folder)!r} ({exc.strerror or exc}); "
            "choose another folder with --out or fix its permissions"
        ) from None
    remove_stale(folder)
    try:
        _discard(_temp_file(folder, ".edgenn-probe"))
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(exc, folder, folder=True) from None
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
    remove_stale(target.parent)
    try:
        staging = _temp_folder(target.parent, f".{target.name}.{temp_tag('staging')}-")
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(exc, target, folder=True) from None
        raise EdgennError(
            f"cannot write in {str(target.parent)!r} ({exc.strerror or exc}); choose another folder or fix its "
            "permissions"
        ) from None
    try:
        try:
            yield staging
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS or not _names_inside(exc, staging):
                raise
            written = _folder_size(staging)
            _discard(staging)
            raise write_error(exc, target, written=written, folder=True) from None
        os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700; a finished folder gets the usual mode
        _replace_folder(staging, target)
    finally:
        _discard(staging)


def _replace_folder(staging: Path, target: Path) -> None:
    try:
        if not target.exists():
            staging.rename(target)
            return
        aside_folder = _temp_folder(target.parent, f".{target.name}.{temp_tag('old')}-")
        aside = aside_folder / target.name
        try:
            target.rename(aside)
            try:
                staging.rename(target)
            except BaseException:
                aside.rename(target)
                raise
        except BaseException:
            if aside.exists() and not target.exists():  # could not put it back: the next run does
                _forget(aside_folder)
            else:
                _discard(aside_folder)
            raise
        _discard(aside_folder)
    except OSError as exc:
        raise EdgennError(f"cannot put {str(target)!r} in place ({exc.strerror or exc}); nothing was changed") from None


def remove_stale_folders(target: str | os.PathLike[str]) -> None:
    """Hidden staging and moved-aside folders of `target` whose process is gone: removed, or put back."""
    target = Path(target)
    remove_stale(target.parent, only=target.name)


# ------------------------------------------------------------------------------ what a kill leaves
# `.NAME.edgenn-HOST-PID-XXXXXXXX.tmp` (atomic_path), `.NAME.edgenn-staging-HOST-PID-XXXXXXXX` and
# `.NAME.edgenn-old-HOST-PID-XXXXXXXX` (staged_folder): "edgenn" so that no one else's file matches, HOST
# (6 hex digits of the host name) so that a process of another machine or container sharing the folder,
# whose pid means nothing here, is never taken for a dead one. mkstemp's random part has no dot or dash.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.edgenn-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[^.-]+\.tmp")
_TEMP_FOLDER = re.compile(r"\.(?P<name>.+)\.edgenn-(?P<kind>staging|old)-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[^.-]+")


def temp_tag(kind: str = "", pid: int | None = None) -> str:
    """The part of a temporary name that says whose it is: `edgenn[-KIND]-HOST-PID`."""
    return "-".join(filter(None, ("edgenn", kind, _HOST, str(os.getpid() if pid is None else pid))))


def remove_stale(folder: str | os.PathLike[str], only: str | None = None) -> list[Path]:
    """Remove what killed edgenn processes left in `folder` (their hidden temporary files, staging and
    moved-aside folders; a moved-aside folder whose target is missing is put back first); `only` limits
    it to one target's name. Returns what was removed. What live processes, this one included, are
    writing is left alone."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(".")]
    except OSError:  # not a folder, or one we may not read: nothing of ours can be there
        return removed
    for path in entries:
        match = _TEMP_FILE.fullmatch(path.name) or _TEMP_FOLDER.fullmatch(path.name)
        if match is None or (only is not None and match["name"] != only) or not _stale(path, match):
            continue
        if match.re is _TEMP_FOLDER and match["kind"] == "old":
            _put_back(path, folder / match["name"])
        _remove(path)
        removed.append(path)
    return removed


def remove_stale_beside(arguments: Iterable[str]) -> None:
    """What killed processes left in the folders that command-line `arguments` name (a folder, or a file's
    folder): any later command that touches a folder clears it, not only the one that was killed."""
    seen: set[Path] = set()
    for argument in arguments:
        value = argument.split("=", 1)[1] if argument.startswith("--") and "=" in argument else argument
        if not value or value.startswith("-") or "\0" in value:
            continue
        path = Path(value)
        for folder in (path, path.parent):
            with contextlib.suppress(OSError):
                if folder not in seen and folder.is_dir():
                    seen.add(folder)
                    remove_stale(folder)


def _put_back(aside_folder: Path, target: Path) -> None:
    old = aside_folder / target.name
    if old.is_dir() and not target.exists():
        with contextlib.suppress(OSError):
            old.rename(target)  # killed between moving the old folder aside and renaming the new one in


def _stale(path: Path, match: re.Match[str]) -> bool:
    """Made on this host by a process that is gone; or by an earlier process that had this process's pid
    (a container started again): this process registers all it makes, before the file exists."""
    pid = int(match["pid"])
    if match["host"] != _HOST:
        return False  # another machine's or container's: its pid cannot be checked from here
    if pid == os.getpid():
        with _LOCK:  # by name: the same folder may be spelled two ways (relative, through a link)
            return path.name not in {p.name for p in _REGISTERED}
    return not _alive(pid)


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would end the process there
        return _alive_on_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _alive_on_windows(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists, another user's
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


# ------------------------------------------------------------------------------ the registry
_REGISTERED: set[Path] = set()
_LOCK = threading.Lock()


def _forked() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # another thread may have held it at the fork
    _REGISTERED.clear()  # the parent's: a child must not remove them


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _temp_file(folder: Path, prefix: str) -> Path:
    with _LOCK:  # registered before any other thread's sweep can see it
        fd, name = tempfile.mkstemp(prefix=f"{prefix}.{temp_tag()}-", suffix=".tmp", dir=folder)
        os.close(fd)
        path = Path(name)
        _REGISTERED.add(path)
    return path


def _temp_folder(parent: Path, prefix: str) -> Path:
    with _LOCK:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        _REGISTERED.add(path)
    return path


def _discard(path: Path) -> None:
    _remove(path)
    _forget(path)


def _forget(path: Path) -> None:
    with _LOCK:
        _REGISTERED.discard(path)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def registered() -> list[Path]:
    """The temporary files and folders this process has made and not yet removed."""
    with _LOCK:
        return sorted(_REGISTERED)


def remove_registered() -> None:
    """Remove every temporary file and folder this process still has (what a `finally` did not reach)."""
    with _LOCK:
        paths = sorted(_REGISTERED, key=lambda p: len(p.parts), reverse=True)  # inner ones first
        _REGISTERED.clear()
    for path in paths:
        match = _TEMP_FOLDER.fullmatch(path.name)
        if match and match["kind"] == "old":
            _put_back(path, path.parent / match["name"])  # stopped between the two renames of staged_folder
        _remove(path)


# --------------------------------------------------------------------------- edgenn's own temp area
AREA_NAME = "edgenn"
_BASE_TEMP: str | None = None  # the system's temp folder while `remove_on_termination` redirects tempfile


def temp_area() -> Path:
    """`<temp>/edgenn`, where scratch folders go (`<temp>/edgenn-UID` where another user owns that one)."""
    base = Path(_BASE_TEMP or tempfile.gettempdir())
    area = base / AREA_NAME
    if hasattr(os, "getuid"):
        try:
            info = area.lstat()
        except FileNotFoundError:
            return area
        except OSError:
            return base / f"{AREA_NAME}-{os.getuid()}"
        if area.is_symlink() or info.st_uid != os.getuid():
            return base / f"{AREA_NAME}-{os.getuid()}"
    return area


_SCRATCH = re.compile(r"(?P<kind>[a-z0-9_]+)-edgenn-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[^.-]+")


@contextlib.contextmanager
def scratch_folder(kind: str) -> Iterator[Path]:
    """A fresh folder `<temp area>/KIND-PID-XXXXXXXX` for one job's intermediate files, removed when the
    block ends (and by the next scratch folder or `edgenn` command if the process is killed)."""
    area = temp_area()
    try:
        area.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_stale_scratch(area)
        folder = _temp_folder(area, f"{kind}-{temp_tag()}-")
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(exc, area, folder=True, temporary=True) from None
        raise
    try:
        try:
            yield folder
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS or not _names_inside(exc, folder):
                raise
            written = _folder_size(folder)
            _discard(folder)
            raise write_error(exc, folder, written=written, folder=True, temporary=True) from None
    finally:
        _discard(folder)


def remove_stale_scratch(area: Path | None = None) -> list[Path]:
    """Scratch folders in the temp area whose process is gone. Returns what was removed."""
    area = area or temp_area()
    removed: list[Path] = []
    try:
        info = area.lstat()
        if area.is_symlink() or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            return removed  # not a folder this user made: nothing in it is swept
        entries = list(area.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _SCRATCH.fullmatch(path.name)
        if match and _stale(path, match):
            _remove(path)
            removed.append(path)
    return removed


# ------------------------------------------------------------------------------------ termination
_TERMINATING: list[int] = []  # the signal that asked this process to stop, once it has
_HANDLER_PID: list[int] = []  # the process that installed the handler (a forked child inherits it)


@contextlib.contextmanager
def remove_on_termination() -> Iterator[None]:
    """For the `edgenn` command around one command's run: SIGTERM (and SIGHUP) become an orderly exit
    (SystemExit(128 + signal)), so that `finally` blocks remove their temporary files, and whatever is
    still registered at the end is removed too. Every library's temporary files (onnxruntime's quantizer
    makes its own) go into one scratch folder of this process, and scratch folders that killed processes
    left are removed first. A handler installed later (`edgenn serve` sets its own) replaces this one."""
    global _BASE_TEMP
    main_thread = threading.current_thread() is threading.main_thread()
    installed = {}
    if main_thread:
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:  # nohup's SIG_IGN is respected
                installed[sig] = signal.signal(sig, _terminate)
    _HANDLER_PID[:] = [os.getpid()]
    previous_temp = tempfile.tempdir
    try:
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(EdgennError, OSError):  # no usable temp area: commands needing one say so
                run = stack.enter_context(scratch_folder("run"))
                _BASE_TEMP, tempfile.tempdir = tempfile.gettempdir(), str(run)
            try:
                yield
            finally:
                tempfile.tempdir, _BASE_TEMP = previous_temp, None
    except BaseException:
        if not _TERMINATING:
            raise
        name = signal.Signals(_TERMINATING[0]).name
        print(f"edgenn: stopped by {name}; its temporary files are removed", file=sys.stderr)
        raise SystemExit(stop_code()) from None
    finally:
        remove_registered()
        for sig, previous in installed.items():
            if signal.getsignal(sig) is _terminate:
                signal.signal(sig, previous)


def stop_code() -> int | None:
    """The exit code of a process that SIGTERM (or SIGHUP) is stopping (128 + the signal), else None."""
    return 128 + _TERMINATING[0] if _TERMINATING else None


def _terminate(signum: int, _frame: object) -> None:
    if os.getpid() not in _HANDLER_PID:  # a forked child: stop as it would have stopped
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _TERMINATING:
        return  # already unwinding: a second signal must not interrupt the clean-up
    _TERMINATING.append(signum)
    raise SystemExit(stop_code())


# ---------------------------------------------------------------------- full disk, read-only folder
WRITE_ERRNOS = frozenset(
    code
    for code in (
        errno.ENOSPC,
        getattr(errno, "EDQUOT", None),
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
    )
    if code is not None
)
FULL_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)
DISK_ERRNOS = FULL_ERRNOS | {errno.EROFS}  # only a write fails so: a full disk, a read-only file system
_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
if hasattr(errno, "EDQUOT"):
    _CAUSES[errno.EDQUOT] = "the disk quota is exceeded"


def write_error(
    exc: OSError,
    target: str | os.PathLike[str],
    needed: int | None = None,
    *,
    written: int | None = None,
    at_least: bool = False,
    folder: bool = False,
    temporary: bool = False,
) -> WriteError:
    """One line for a write that failed for a full disk, a read-only file system or a refused permission:
    the path, the cause, the free space there and the space needed (`needed`, or at least what was
    `written` when it failed), and what to do."""
    target = Path(target)
    where = target if folder else target.parent
    what = "the temporary folder" if temporary else ("folder" if folder else "")
    cause = _CAUSES.get(exc.errno or 0, exc.strerror or str(exc))
    figures = []
    free = free_bytes(where)
    if free is not None:
        figures.append(f"{format_size(free)} free there")
    if needed:
        figures.append(f"{'at least ' if at_least else ''}{format_size(needed)} needed")
    elif written:
        figures.append(f"at least {format_size(written)} needed")
    if exc.errno in FULL_ERRNOS:
        fix = "free space or choose another folder"
    elif exc.errno == errno.EROFS:
        fix = "choose another folder"
    else:
        fix = "fix its permissions or choose another folder"
    if temporary:
        fix += " (TMPDIR sets where temporary files go)"
    shown = f"{what} {str(target)!r}".strip()
    detail = f" ({', '.join(figures)})" if figures else ""
    return WriteError(f"cannot write {shown}: {cause}{detail}; {fix}")


def os_error_in(text: str) -> OSError | None:
    """The OSError a library's message reports (`... (os error 28)`, `[Errno 28] ...`), where it names one."""
    match = re.search(r"\(os error (\d+)\)|\[Errno (\d+)\]", text)
    if match is None:
        return None
    code = int(match[1] or match[2])
    return OSError(code, os.strerror(code))


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Free space on the file system holding `folder` (or its nearest existing parent), for this user."""
    path = Path(folder)
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def format_size(size: float) -> str:
    """Bytes for people: 512 B, 12.0 KiB, 3.4 MiB, 1.2 GiB."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _folder_size(folder: Path) -> int | None:
    total = 0
    with contextlib.suppress(OSError):
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    total += path.stat().st_size
    return total or None


def _names_only(exc: OSError, *paths: Path) -> bool:
    """Whether the error names only `paths` (or no path at all: a write's own error)."""
    allowed = {os.path.abspath(p) for p in paths}
    return all(os.path.abspath(os.fsdecode(n)) in allowed for n in (exc.filename, exc.filename2) if n is not None)


def _names_inside(exc: OSError, folder: Path) -> bool:
    """Whether the error is about `folder` or something in it (or names no path: a write's own error)."""
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    if not names:
        return True
    return any(Path(os.fsdecode(n)).resolve().is_relative_to(folder.resolve()) for n in names)
