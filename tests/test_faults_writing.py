"""Faults while writing: what a killed or stopped command leaves (nothing, after the next run), and a full
disk or a read-only folder as one line naming the path and the space."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgenn import fileio
from edgenn.cli import EdgennGroup, cli
from edgenn.errors import WriteError
from edgenn.fileio import atomic_path, scratch_folder, write_bytes_atomic, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
MLP = REPO / "models" / "mlp"
ORT_SESSION_FILE = ".ses"  # onnxruntime keeps one session id file in TMPDIR, reused run to run: not a leftover


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ------------------------------------------------------------------------------ stale temp files
def test_the_next_write_removes_what_dead_processes_left_and_keeps_what_live_ones_write(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    gone, alive = fileio.temp_tag(pid=dead), fileio.temp_tag(pid=live)
    stale = [f".model.onnx.{gone}-k3j_x9a1.tmp", f".train.json.{gone}-abcdefgh.tmp", f".edgenn-probe.{gone}-q.tmp"]
    elsewhere = gone.replace(fileio._HOST, "0" * 6 if fileio._HOST != "0" * 6 else "1" * 6)  # another host's
    kept = [
        f".model.onnx.{alive}-zzzzzzzz.tmp",  # a live process's
        ".notes.tmp",  # not ours
        f"model.onnx.{gone}-abc.tmp",  # not hidden: not ours
        f".notes.{dead}-draft.tmp",  # a user's own name with a number in it
        f".config.old-{dead}-backup",  # and another
        f".model.onnx.{elsewhere}-yyyyyyyy.tmp",  # another machine's or container's: its pid means nothing here
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"half a file")
    (tmp_path / f".pkg.{fileio.temp_tag('staging', dead)}-a1b2c3d4").mkdir()
    # an earlier process that had this pid (a container started again) and is gone: this one never made it
    (tmp_path / f".card.json.{fileio.temp_tag()}-reused00.tmp").write_bytes(b"")

    write_text_atomic(tmp_path / "model.onnx", "new")

    assert _names(tmp_path) == {"model.onnx", *kept}
    assert (tmp_path / "model.onnx").read_text() == "new"


def test_a_scratch_folder_clears_dead_processes_scratch_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    area = tmp_path / "edgenn"
    area.mkdir()
    dead, live = _dead_pid(), os.getppid()
    gone, alive = fileio.temp_tag(pid=dead), fileio.temp_tag(pid=live)
    (area / f"quantize-{gone}-x1y2z3w4").mkdir()
    (area / f"quantize-{gone}-x1y2z3w4" / "preprocessed.onnx").write_bytes(b"model")
    (area / f"run-{gone}-abcdefgh").mkdir()
    (area / f"tune-{alive}-abcdefgh").mkdir()
    (area / f"backup-{dead}-final").mkdir()  # not ours: no edgenn tag

    with scratch_folder("quantize") as folder:
        assert folder.parent == area and folder.name.startswith(f"quantize-{fileio.temp_tag()}-")
        (folder / "candidate.onnx").write_bytes(b"x")
        assert folder in fileio.registered()
        assert _names(area) == {folder.name, f"tune-{alive}-abcdefgh", f"backup-{dead}-final"}
    assert _names(area) == {f"tune-{alive}-abcdefgh", f"backup-{dead}-final"}
    assert not fileio.registered()


# ------------------------------------------------------------------------------ killed commands
def _start(args: list[object], tmpdir: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "edgenn.cli", *map(str, args)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _when(child: subprocess.Popen, found, timeout: float = 120) -> list[Path]:
    """Wait until `found()` lists something (the command is inside its writing step); fail if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        hits = found()
        if hits:
            return hits
        time.sleep(0.01)
    child.kill()
    pytest.fail(f"the command ended (or hung) before its writing step: {child.communicate()[1][-500:]}")


def _leftovers(out: Path, tmpdir: Path) -> list[str]:
    """Hidden files and folders in the output folder, scratch folders in edgenn's temp area, anything else
    in TMPDIR (onnxruntime's quantizer makes its own folders there)."""
    area = tmpdir / "edgenn"
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    scratch = [f"edgenn/{p.name}" for p in area.iterdir()] if area.is_dir() else []
    other = [p.name for p in tmpdir.iterdir() if p.name not in ("edgenn", ORT_SESSION_FILE)]
    return hidden + scratch + other


@pytest.fixture
def folders(tmp_path):
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmpdir.mkdir()
    return out, tmpdir


def test_sigterm_during_export_validation_leaves_no_hidden_file(folders):
    out, tmpdir = folders
    child = _start(["export", "mlp", "--weights", MLP / "model.safetensors", "-o", out / "m.onnx"], tmpdir)
    _when(child, lambda: list(out.glob(".m.onnx.*.tmp")))  # written, being validated
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143, err[-500:]
    assert "stopped by SIGTERM" in err
    assert not (out / "m.onnx").exists()
    assert _leftovers(out, tmpdir) == []


def test_sigterm_during_quantize_leaves_no_scratch_folder(folders):
    out, tmpdir = folders
    child = _start(["quantize", MLP / "model.onnx", "-o", out / "q.onnx", "--mode", "dynamic"], tmpdir)
    _when(child, lambda: list((tmpdir / "edgenn").glob("quantize-*")))
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143, err[-500:]
    assert not (out / "q.onnx").exists()
    assert _leftovers(out, tmpdir) == []


def test_after_a_sigkill_during_quantize_the_next_run_of_any_command_clears_the_temp_area(folders):
    out, tmpdir = folders
    child = _start(["quantize", MLP / "model.onnx", "-o", out / "q.onnx", "--mode", "dynamic"], tmpdir)
    _when(child, lambda: list((tmpdir / "edgenn").glob("quantize-*")))
    child.kill()
    child.wait(timeout=30)
    assert any(name.startswith("edgenn/quantize-") for name in _leftovers(out, tmpdir))  # what a kill leaves

    zoo = _start(["zoo"], tmpdir)
    assert zoo.wait(timeout=60) == 0
    assert _leftovers(out, tmpdir) == []


def test_after_a_sigkill_during_export_validation_the_next_run_removes_the_unvalidated_file(folders):
    out, tmpdir = folders
    args = ["export", "mlp", "--weights", MLP / "model.safetensors", "-o", out / "m.onnx", "--batch", "1"]
    child = _start(args, tmpdir)
    _when(child, lambda: list(out.glob(".m.onnx.*.tmp")))
    child.kill()
    child.wait(timeout=30)
    assert [p for p in out.iterdir() if p.name.startswith(".m.onnx.")]  # whole, maybe, but never validated

    again = _start(args, tmpdir)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-500:]
    assert _names(out) == {"m.onnx"}
    assert _leftovers(out, tmpdir) == []


# ------------------------------------------------------------------------------ full disk, read-only
def _mount_tmpfs(where: Path, options: str) -> None:
    """Mount a tmpfs at `where`, or skip saying why."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command here: the tmpfs cases need root (CAP_SYS_ADMIN); the simulated cases ran")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root with "
            "CAP_SYS_ADMIN; the simulated cases ran"
        )


@pytest.fixture
def full_disk(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=4k")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    _mount_tmpfs(folder, "ro,size=4k")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def _error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert "unexpected" not in output and "Traceback" not in output, output
    return errors[0]


def test_a_full_disk_is_one_line_with_the_path_the_free_space_and_the_space_needed(full_disk):
    with pytest.raises(WriteError) as caught:
        write_bytes_atomic(full_disk / "big.bin", b"0" * 20_000)
    message = str(caught.value)
    assert str(full_disk / "big.bin") in message and "no space left" in message
    assert "free there" in message and "19.5 KiB needed" in message and "free space or choose another folder" in message
    assert "\n" not in message
    assert list(full_disk.iterdir()) == []  # the partial temp file is gone

    result = CliRunner().invoke(cli, ["train", "mlp", "--epochs", "1", "-o", str(full_disk / "run")])
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert str(full_disk / "run" / "model.safetensors") in line and "no space left" in line
    assert "free there" in line and "KiB needed" in line and "SafetensorError" not in line
    assert [p.name for p in full_disk.rglob("*")] == ["run"]  # an empty folder: no half file, no temp file


def test_a_read_only_folder_is_one_line_naming_it(read_only):
    with pytest.raises(WriteError, match="read-only") as caught:
        write_text_atomic(read_only / "card.json", "{}")
    assert str(read_only / "card.json") in str(caught.value)

    result = CliRunner().invoke(cli, ["train", "mlp", "--epochs", "1", "-o", str(read_only / "run")])
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert str(read_only / "run") in line and "read-only" in line and "choose another folder" in line


# Simulated, so that they run everywhere (root ignores file modes, and mounting needs CAP_SYS_ADMIN)
def test_a_simulated_full_disk_names_the_target_and_what_was_written(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(WriteError) as caught:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x" * 3000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    message = str(caught.value)
    assert message.startswith(f"cannot write {str(target)!r}: no space left on the device (")
    assert "free there" in message and "at least 2.9 KiB needed" in message
    assert list(tmp_path.iterdir()) == []


def test_a_simulated_read_only_folder_and_a_simulated_full_disk_for_safetensors(tmp_path, monkeypatch):
    def read_only(*_args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(kwargs.get("dir")))

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", read_only)
        with pytest.raises(WriteError, match="the file system is read-only") as caught:
            write_text_atomic(tmp_path / "x.json", "{}")
    assert str(tmp_path / "x.json") in str(caught.value)

    import safetensors.torch
    from safetensors import SafetensorError

    def full(*_args, **_kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    result = CliRunner().invoke(cli, ["train", "mlp", "--epochs", "1", "-o", str(tmp_path / "run")])
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert str(tmp_path / "run" / "model.safetensors") in line and "at least" in line and "free there" in line
    assert _names(tmp_path / "run") == set()


def test_known_causes_are_named_not_unexpected(tmp_path, monkeypatch):
    import edgenn.train

    def too_big(*_args, **_kwargs):
        raise MemoryError("Unable to allocate 149. GiB for an array with shape (200000, 200000)")

    monkeypatch.setattr(edgenn.train, "train", too_big)
    result = CliRunner().invoke(cli, ["train", "mlp", "-o", str(tmp_path / "run")])
    line = _error_line(result.output)
    assert "out of memory" in line and "149. GiB" in line and "smaller batch" in line

    denied = EdgennGroup.known_cause(PermissionError(errno.EACCES, "Permission denied", "/data/in.npz"))
    assert denied == "Permission denied: '/data/in.npz'; fix its permissions or choose another path"
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.onnx"))
        except OSError as exc:
            raise RuntimeError("saving failed") from exc
    except RuntimeError as wrapped:
        full = EdgennGroup.known_cause(wrapped)
    assert full is not None and str(tmp_path / "x.onnx") in full and "free there" in full
    assert EdgennGroup.known_cause(ValueError("a bug")) is None  # still "unexpected": its cause is not known
