import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgenn import zoo
from edgenn.build import BuildOptions, build, buildable
from edgenn.cli import cli
from edgenn.errors import EdgennError
from edgenn.fileio import temp_tag
from edgenn.runtime import Model

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "models"
# Fast settings for tests: the bench stage's timings are not what is tested here.
FAST = dict(bench_seconds=0.2, tune_seconds=22.0, tune_threads=(1,))


def committed_cards():
    return sorted(COMMITTED.glob("*/card.json"))


def accuracy(model: Model, inputs: np.ndarray, labels: np.ndarray) -> float:
    scores = model.predict(inputs)[model.outputs[0].name]
    return float(np.mean(scores.argmax(axis=1) == labels))


def test_every_buildable_model_is_committed():
    assert sorted(p.parent.name for p in committed_cards()) == sorted(buildable())


@pytest.mark.parametrize("card_path", committed_cards(), ids=lambda p: p.parent.name)
def test_committed_artifacts_reproduce_their_card(card_path, digits):
    card = json.loads(card_path.read_text())
    folder = card_path.parent
    entry = zoo.entry(card["model"])
    inputs, labels = digits.test.inputs(entry.preprocessing), digits.test.labels
    fp32 = Model(folder / card["export"]["file"], providers="cpu")
    assert fp32.labels == entry.labels
    assert accuracy(fp32, inputs, labels) == pytest.approx(card["quantized"]["fp32_accuracy"], abs=1e-9)
    assert card["quantized"]["fp32_accuracy"] == pytest.approx(card["training"]["test_accuracy"], abs=1e-6)
    assert card["training"]["test_accuracy"] >= entry.accuracy_target
    quantized = Model(folder / card["quantized"]["file"], providers="cpu")
    # int8 kernels differ by CPU instruction set (VNNI or not): allow one image of 360 to flip
    assert accuracy(quantized, inputs, labels) == pytest.approx(card["quantized"]["accuracy"], abs=1.01 / 360)
    assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()
    # the tuned folder is whole (digests match) and reproduces the test accuracy recorded for each choice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # tuned on another machine: noted, still runs
        tuned = Model(folder / card["tuned"]["folder"], threads=1)
    for point in card["tuned"]["points"]:
        if point["threads"] == 1:
            route = tuned.route_for(point["batch"])
            if route.candidate.id == point["choice"]:
                scores = np.concatenate([tuned.predict(x)[tuned.outputs[0].name] for x in np.split(inputs, 8)])
                got = float(np.mean(scores.argmax(axis=1) == labels))
                assert got == pytest.approx(point["test_accuracy"], abs=1.01 / 360)


@pytest.fixture(scope="module")
def mlp_build(tmp_path_factory):
    models_dir = tmp_path_factory.mktemp("models")
    first = build(["mlp"], BuildOptions(models_dir=models_dir, **FAST))[0]
    return models_dir, first


def test_fast_rebuild_matches_the_committed_card(mlp_build, digits):
    models_dir, result = mlp_build
    assert all(not s.skipped for s in result.stages)
    committed = json.loads((COMMITTED / "mlp" / "card.json").read_text())
    rebuilt = json.loads((models_dir / "mlp" / "card.json").read_text())
    assert rebuilt["training"]["test_accuracy"] == committed["training"]["test_accuracy"]
    assert rebuilt["quantized"]["fp32_accuracy"] == committed["quantized"]["fp32_accuracy"]
    x = digits.test.inputs(zoo.entry("mlp").preprocessing)
    old = Model(COMMITTED / "mlp" / "model.onnx").predict(x)["output"]
    new = Model(models_dir / "mlp" / "model.onnx").predict(x)["output"]
    np.testing.assert_allclose(new, old, atol=1e-4, rtol=1e-3)


def test_unchanged_stages_are_not_redone(mlp_build):
    models_dir, _ = mlp_build
    again = build(["mlp"], BuildOptions(models_dir=models_dir, **FAST))[0]
    assert [s.skipped for s in again.stages] == [True, True, True, True, True]
    assert Model(models_dir / "mlp" / "deploy").routes  # the tune stage's folder, as recorded
    # a new accuracy budget changes the quantize stage's inputs; the bench reruns only if the
    # quantized file it reads came out different (its key hashes the bytes, not the settings)
    quantized = models_dir / "mlp" / "model.quant.onnx"
    before = quantized.read_bytes()
    budget = build(["mlp"], BuildOptions(models_dir=models_dir, max_accuracy_drop=0.25, **FAST))[0]
    assert [s.skipped for s in budget.stages] == [True, True, False, quantized.read_bytes() == before, False]
    # an artifact that went missing is rebuilt, and what depends on it
    (models_dir / "mlp" / "model.onnx").unlink()
    missing = build(["mlp"], BuildOptions(models_dir=models_dir, max_accuracy_drop=0.25, **FAST))[0]
    assert [s.skipped for s in missing.stages][:2] == [True, False]
    # an artifact damaged in place (its size unchanged) is found by its digest: that stage is redone, and
    # every stage after it, and the progress says why
    exported = models_dir / "mlp" / "model.onnx"
    good = exported.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0x08
    exported.write_bytes(bytes(damaged))
    said = []
    repaired = build(
        ["mlp"],
        BuildOptions(models_dir=models_dir, max_accuracy_drop=0.25, **FAST),
        progress=lambda _name, text: said.append(text),
    )[0]
    assert [s.skipped for s in repaired.stages] == [True, False, False, False, False]
    assert any("model.onnx changed since it was built" in line for line in said)
    assert any("comes after export" in line for line in said)
    assert exported.read_bytes() == good  # the export is deterministic: the same file again
    record = json.loads((models_dir / "mlp" / "build.json").read_text())["stages"]
    assert record["export"]["digests"]["model.onnx"] == hashlib.sha256(good).hexdigest()
    forced = build(["mlp"], BuildOptions(models_dir=models_dir, force=True, max_accuracy_drop=0.25, **FAST))[0]
    assert not any(s.skipped for s in forced.stages)


def test_stage_keys_follow_the_machine_and_every_imported_module(mlp_build, monkeypatch):
    from edgenn import build as build_module
    from edgenn.runtime.deploy import Machine

    models_dir, _ = mlp_build
    options = BuildOptions(models_dir=models_dir, **FAST)
    folder = models_dir / "mlp"

    def keys():
        return {stage: build_module._stage_key(stage, "mlp", folder, options) for stage in build_module.STAGES}

    before = keys()
    assert keys() == before  # stable
    # another machine: the stages that measure speed are redone, training and export are not
    elsewhere = Machine("Intel(R) Xeon(R) Platinum 8480+", ("amx_int8",), 56, (("onnxruntime", "9.9"),))
    with monkeypatch.context() as m:
        m.setattr(build_module, "this_machine", lambda providers=(): elsewhere)
        moved = keys()
    assert [s for s in build_module.STAGES if moved[s] != before[s]] == ["quantize", "bench", "tune"]
    # an edit to a module that tune reaches only through its imports (edgenn.stats) redoes tune and bench
    closure = build_module.import_closure("edgenn.tune")
    assert {"tune.py", "recipes.py", "stats.py", "timing.py", "runtime/deploy.py", "quantize.py"} <= set(closure)
    # export and quantize reach the layer-by-layer walk, not the benchmark (its statistics, its plots)
    for stage in ("export", "quantize"):
        reached = set(build_module.import_closure(f"edgenn.{stage}"))
        assert "layerwise.py" in reached and not {"bench.py", "stats.py"} & reached
    real = build_module._read_source
    monkeypatch.setattr(
        build_module, "_read_source", lambda path: real(path) + (b"# edit" if path.name == "stats.py" else b"")
    )
    edited = keys()
    assert [s for s in build_module.STAGES if edited[s] != before[s]] == ["bench", "tune"]


def test_interrupted_build_resumes_without_half_files(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "edgenn.cli", "build", "mlp", "--models-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = tmp_path / "mlp" / "build.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.is_file() and "train" in json.loads(state.read_text() or "{}").get("stages", {}):
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-export (or soon after): a hard kill, no clean-up
    finally:
        proc.wait(timeout=30)
    folder = tmp_path / "mlp"
    import onnx

    for artifact in folder.glob("*.onnx"):
        onnx.checker.check_model(str(artifact))  # any artifact there is whole
    # as a kill mid-write leaves (named by the killed process, whose pid is gone)
    (folder / f".model.onnx.{temp_tag(pid=proc.pid)}-crash000.tmp").write_bytes(b"half a file")
    resumed = build(["mlp"], BuildOptions(models_dir=tmp_path, **FAST))[0]
    assert resumed.stages[0].skipped, "training finished before the kill and must not be redone"
    assert not list(folder.glob(".*.tmp"))
    assert Model(folder / "model.quant.onnx").predict(np.zeros((2, 64), np.float32))["output"].shape == (2, 10)


def test_build_errors(tmp_path):
    with pytest.raises(EdgennError, match="unknown model 'nope'"):
        build(["nope"], BuildOptions(models_dir=tmp_path))
    with pytest.raises(EdgennError, match="no dataset to train on"):
        build(["mlp_tutorial"], BuildOptions(models_dir=tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["build", "mlp", "--models-dir", str(blocker / "models")])
    assert result.exit_code == 1
    assert "cannot write to output folder" in result.output and "Traceback" not in result.output


def test_reference_table_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "reference_table.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
