"""Every stage on the execution providers present: bench, quantize, export and the CLI over the one seam.

Uses the committed, trained models/ (no training here). OpenVINO tests skip, naming the reason,
where its plugin cannot run; no test asserts a speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino_gate
import pytest
from click.testing import CliRunner

from edgenn.bench import BenchOptions, bench
from edgenn.cli import cli
from edgenn.errors import ProviderError
from edgenn.evaluate import LatencyOptions
from edgenn.export import ExportOptions, export_source
from edgenn.quantize import QuantizeOptions, quantize
from edgenn.runtime import providers

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
OPENVINO_MISSING = openvino_gate.reason()
needs_openvino = pytest.mark.skipif(OPENVINO_MISSING is not None, reason=f"OpenVINO: {OPENVINO_MISSING}")
# bf16 needs the instructions too (avx512_bf16 or AMX): some AMD EPYC machines have them, some do not
OPENVINO_BF16_MISSING = openvino_gate.bf16_reason()
needs_openvino_bf16 = pytest.mark.skipif(OPENVINO_BF16_MISSING is not None, reason=f"OpenVINO: {OPENVINO_BF16_MISSING}")
QUICK = dict(runs=12, warmup=2, rounds=4)


def cli_run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# -------------------------------------------------------------------------------------- bench
@needs_openvino_bf16
def test_bench_puts_every_provider_and_precision_side_by_side():
    path = MODELS / "lenet5" / "model.onnx"
    options = BenchOptions(providers=("cpu", "openvino"), precisions=("f32", "bf16"), batches=(1, 8), **QUICK)
    report = bench([path], options=options)
    got = {(r.provider, r.precision, r.batch) for r in report.results}
    assert got == {(p, q, b) for p, q in (("cpu", "f32"), ("openvino", "f32"), ("openvino", "bf16")) for b in (1, 8)}
    skipped = {s.provider: s.reason for s in report.skipped}
    assert skipped == {
        "cpu bf16": f"cpu CPU ({providers._cpu_model()}) does not compute in bf16: it offers f32; "
        "openvino offers bf16 and f16 where the device has them"
    }
    for r in report.results:
        if r.provider == "cpu":
            assert r.baseline is None and r.speedup is None
        else:
            # paired against the same file on the CPU provider, in the same rounds
            assert r.baseline == "model [cpu]" and r.speedup.rounds == 4
            assert r.providers_used[0] == "OpenVINOExecutionProvider"
            assert r.placement.startswith("openvino CPU (") and f" {r.precision}, 12 of 12 nodes" in r.placement
    data = json.loads(json.dumps(report.to_dict()))
    assert data["options"]["precisions"] == ["f32", "bf16"]
    assert "OpenVINOExecutionProvider" in data["environment"]["providers_available"]


def test_bench_skips_what_is_not_here_and_runs_the_rest(monkeypatch):
    monkeypatch.setattr(providers, "_REGISTERED", {"openvino": ()})  # the plugin offers no device
    report = bench([MODELS / "mlp" / "model.onnx"], options=BenchOptions(providers=("cpu", "openvino"), **QUICK))
    assert [r.provider for r in report.results] == ["cpu"]
    assert [s.provider for s in report.skipped] == ["openvino"]
    assert report.skipped[0].reason.startswith("the openvino plugin offers no device on this machine")


def test_bench_cli_usage_error_for_an_unknown_precision():
    result = cli_run("bench", MODELS / "mlp" / "model.onnx", "--precision", "int4")
    assert result.exit_code == 2 and "unknown precision 'int4': use one of f32, bf16, f16" in result.output


# ----------------------------------------------------------------------------------- quantize
@needs_openvino
def test_quantize_reports_accuracy_and_latency_on_each_provider(tmp_path):
    """The static QDQ LeNet-5 on the CPU provider and under OpenVINO (where it runs in int8 too)."""
    options = QuantizeOptions(
        mode="static", latency=LatencyOptions(rounds=2, repeats=2, warmup=1), providers=("cpu", "openvino")
    )
    result = quantize(MODELS / "lenet5" / "model.onnx", tmp_path / "q.onnx", options)
    e = result.evaluation
    assert [p.provider for p in e.providers] == ["cpu", "openvino"]
    cpu, ov = e.providers
    assert (cpu.fp32_accuracy, cpu.quantized_accuracy) == (e.fp32_accuracy, e.quantized_accuracy)
    assert ov.fp32_accuracy == pytest.approx(cpu.fp32_accuracy, abs=1 / 360)
    assert abs(ov.quantized_accuracy - cpu.quantized_accuracy) <= 2 / 360  # the same int8 model, other kernels
    assert ov.drop_points <= 0.5
    assert ov.quantized_placement.startswith("openvino CPU (") and ov.fp32_placement.endswith("12 of 12 nodes")
    assert [lat.batch_size for lat in ov.latency] == [1, 64] and all(lat.quantized_ms > 0 for lat in ov.latency)
    assert json.loads(json.dumps(result.to_dict()))["evaluation"]["providers"][1]["provider"] == "openvino"


def test_quantize_refuses_a_provider_that_is_not_here_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(providers, "_REGISTERED", {"openvino": ()})
    with pytest.raises(ProviderError, match=r"^--providers openvino: the openvino plugin offers no device"):
        quantize(MODELS / "lenet5" / "model.onnx", tmp_path / "q.onnx", QuantizeOptions(providers=("cpu", "openvino")))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------- export
@needs_openvino_bf16
def test_export_validates_on_openvino_in_f32_and_bf16_with_stated_tolerances(tmp_path):
    options = ExportOptions(validate_on=("openvino", "openvino:bf16"))
    result = export_source("lenet5", tmp_path / "lenet5.onnx", MODELS / "lenet5" / "model.safetensors", options)
    v = result.raise_for_failure().validation
    labels = [label for label, _ in v.provider_parity]
    assert labels == [f"{p}, batch {b}" for p in ("openvino", "openvino bf16") for b in (1, 7, 64)]
    assert all(report.passed for _, report in v.provider_parity)
    f32 = max(r.max_abs_error for label, r in v.provider_parity if not label.startswith("openvino bf16"))
    bf16 = max(r.max_abs_error for label, r in v.provider_parity if label.startswith("openvino bf16"))
    assert f32 < 1e-4 < 1e-2 < bf16  # bf16 is not fp32, and the report shows it
    assert v.notes[0].startswith("openvino: atol 0.0001 + rtol 0.001, because f32 on every provider")
    assert v.notes[1].startswith("openvino bf16: atol 0.25 + rtol 0.05, because bf16 keeps 8 significant bits")
    stages = {s.name: s for s in v.stages}
    assert stages["onnxruntime session (openvino bf16)"].detail.startswith("created on openvino CPU (")


def test_export_refuses_a_provider_that_is_not_here_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(providers, "_REGISTERED", {"openvino": ()})
    result = cli_run(
        "export",
        "lenet5",
        "--weights",
        MODELS / "lenet5" / "model.safetensors",
        "-o",
        tmp_path / "l.onnx",
        "--validate-on",
        "openvino:bf16",
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --validate-on openvino bf16: the openvino plugin offers no device on this machine: it serves Intel "
        f"CPUs, GPUs and NPUs, and this CPU is {providers._cpu_model()}; run on the cpu provider instead"
    ]
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------- CLI
def test_providers_command_lists_devices_and_reasons():
    table = cli_run("providers")
    assert table.exit_code == 0
    assert any(line.startswith("cpu ") and "CPUExecutionProvider" in line for line in table.output.splitlines())
    listed = json.loads(cli_run("providers", "--json").output)
    assert [p["provider"] for p in listed] == ["tensorrt", "cuda", "openvino", "cpu"]
    assert listed[-1]["available"] and listed[-1]["devices"][0]["precisions"] == ["f32"]
    openvino = listed[2]
    assert openvino["available"] == (OPENVINO_MISSING is None) and openvino["reason"] == OPENVINO_MISSING


@needs_openvino_bf16
def test_predict_on_openvino_says_where_it_ran(tmp_path, digits):
    x = digits.test.inputs(
        __import__("edgenn.runtime", fromlist=["Model"])
        .Model(MODELS / "lenet5" / "model.onnx", providers="cpu")
        .preprocessing
    )[:1]
    np.save(tmp_path / "x.npy", x)
    result = cli_run(
        "predict",
        MODELS / "lenet5" / "model.onnx",
        tmp_path / "x.npy",
        "--provider",
        "openvino",
        "--precision",
        "bf16",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["session"]["provider"] == "openvino" and data["session"]["precision"] == "bf16"
    assert data["predictions"][0][0]["label"] == str(digits.test.labels[0])


def test_predict_with_a_provider_that_is_not_here_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(providers, "_REGISTERED", {"openvino": ()})
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    result = cli_run("predict", MODELS / "lenet5" / "model.onnx", tmp_path / "x.npy", "--provider", "openvino")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the openvino plugin offers no device on this machine")
    fell_back = cli_run(
        "predict", MODELS / "lenet5" / "model.onnx", tmp_path / "x.npy", "--provider", "openvino", "--fallback"
    )
    assert fell_back.exit_code == 0 and "the CPU provider runs it instead" in fell_back.output


@needs_openvino_bf16
def test_bench_takes_a_precision_written_in_the_provider_and_measures_each_configuration_once():
    from edgenn.bench import session_plan

    plan, skipped = session_plan(["openvino:bf16", "openvino", "openvino:CPU", "cpu:bf16"], ["f32", "f16"])
    assert [c.label for c in plan] == ["openvino bf16", "openvino"]
    reasons = {s.provider: s.reason for s in skipped}
    assert set(reasons) == {"cpu bf16"} | (
        {"openvino f16"} if "f16" not in providers.pick_device("openvino", None).precisions else set()
    )


@needs_openvino
def test_bench_fallback_lets_the_cpu_provider_take_refused_nodes(dynamic_lstm):
    path = dynamic_lstm
    strict = bench(
        [path], options=BenchOptions(providers=("cpu", "openvino"), batches=(2,), inputs=_sequence(), **QUICK)
    )
    assert [r.provider for r in strict.results] == ["cpu"]
    assert "(DynamicQuantizeLSTM)" in strict.skipped[0].reason
    loose = bench(
        [path],
        options=BenchOptions(providers=("cpu", "openvino"), fallback=True, batches=(2,), inputs=_sequence(), **QUICK),
    )
    ov = [r for r in loose.results if r.provider == "openvino"][0]
    assert "23 of 24 nodes" in ov.placement and "the CPU provider runs 1 of 24 nodes" in ov.placement


def _sequence():
    from edgenn.specs import TensorSpec

    return (TensorSpec("input", ("batch", 8, 8)),)
