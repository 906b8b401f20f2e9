from __future__ import annotations

import os
from pathlib import Path

import pytest

# Deterministic and light on a 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# Before anything registers the OpenVINO plugin: lets it offer its CPU device on non-Intel CPUs too,
# in this process only (see openvino_gate.py).
import openvino_gate  # noqa: E402,F401


def pytest_report_header(config):
    from edgenn.runtime.providers import unavailable_reason

    why = unavailable_reason("openvino")
    gate = " (vendor gate lifted for the tests)" if openvino_gate.STATE == "lifted" else ""
    return f"edgenn: OpenVINO provider {'available' + gate if why is None else 'not available: ' + why}"


@pytest.fixture(scope="session")
def digits():
    from edgenn.data import load_digits_split

    return load_digits_split()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """trained(name) -> path of weights from a default-settings training run, once per session."""
    from edgenn.train import TrainConfig, train

    cache: dict[str, Path] = {}

    def weights(name: str) -> Path:
        if name not in cache:
            out = tmp_path_factory.mktemp(f"trained-{name}")
            cache[name] = train(TrainConfig.for_model(name), out).weights_path
        return cache[name]

    return weights


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """exported(name) -> path of a validated .onnx of the trained zoo model, once per session."""
    from edgenn.export import export_source

    cache: dict[str, Path] = {}

    def path(name: str) -> Path:
        if name not in cache:
            target = tmp_path_factory.mktemp(f"onnx-{name}") / f"{name}.onnx"
            export_source(name, target, weights=trained(name)).raise_for_failure()
            cache[name] = target
        return cache[name]

    return path


@pytest.fixture(scope="session")
def dynamic_lstm(tmp_path_factory) -> Path:
    """The committed LSTM quantized with dynamic int8: its DynamicQuantizeLSTM is an onnxruntime contrib op
    that OpenVINO cannot run. (What `edgenn build` ships for the LSTM depends on the machine it ran on.)"""
    from edgenn.quantize import QuantizeOptions, quantize

    models = Path(__file__).resolve().parent.parent / "models"
    target = tmp_path_factory.mktemp("lstm-dynamic") / "lstm.dynamic.onnx"
    quantize(models / "lstm" / "model.onnx", target, QuantizeOptions(mode="dynamic", providers=("cpu",)))
    return target


@pytest.fixture(scope="session")
def two_input_onnx(tmp_path_factory) -> Path:
    """tests/user_models.py:two_inputs exported (inputs image, features; outputs logits, score), once per session."""
    from edgenn.export import ExportOptions, export_source

    path = tmp_path_factory.mktemp("two-inputs") / "two.onnx"
    source = f"{Path(__file__).resolve().parent / 'user_models.py'}:two_inputs"
    export_source(source, path, options=ExportOptions(parity_batches=(1, 3))).raise_for_failure()
    return path


def ray_processes() -> list[str]:
    """Command lines of Ray's processes still running (raylet, gcs_server, workers named ray::...), read from
    /proc so that no pgrep is needed."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # the process ended while we looked
            continue
        if any(key in text for key in ("raylet", "gcs_server", "ray::")) and "pytest" not in text:
            found.append(text[:200])
    return found
