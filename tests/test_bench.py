"""edgenn bench: real short benches of tiny models, injected timings, bad input. No test asserts a speed."""

import csv
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import edgenn.bench as bench_module
from edgenn import timing
from edgenn.bench import BenchOptions, Rounds, bench, plan_rounds, run_rounds
from edgenn.cli import cli
from edgenn.environment import collect_environment, cpu_flags, cpu_model, physical_cores
from edgenn.runtime.providers import available_providers
from edgenn.specs import TensorSpec

CUDA = "CUDAExecutionProvider" in available_providers()
TENSORRT = "TensorrtExecutionProvider" in available_providers()
QUICK = dict(runs=20, warmup=2, rounds=5)


def identity_model(path, shape):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench_models")
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 this is not a protobuf model" * 10)
    return {
        "identity": identity_model(folder / "identity.onnx", ["batch", 64]),
        "identity_copy": identity_model(folder / "identity_copy.onnx", ["N", 64]),
        "fixed": identity_model(folder / "fixed.onnx", [4, 8]),
        "sequence": identity_model(folder / "sequence.onnx", ["batch", "sequence", 8]),
        "corrupt": corrupt,
        "folder": folder,
    }


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A trained (1 epoch: speed does not depend on accuracy) and exported zoo MLP."""
    from edgenn.export import ExportOptions, export_source
    from edgenn.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("bench_mlp")
    weights = train(TrainConfig.for_model("mlp", epochs=1), folder).weights_path
    path = folder / "mlp.onnx"
    export_source("mlp", path, weights, ExportOptions(parity_batches=(2,))).raise_for_failure()
    return {"onnx": path, "weights": weights}


@pytest.fixture(scope="module")
def report(models, mlp):
    """One real short bench: two ONNX variants beside the eager baseline, two batch sizes."""
    return bench(
        [models["identity"], mlp["onnx"]],
        eager="mlp",
        weights=mlp["weights"],
        options=BenchOptions(batches=(1, 3), **QUICK),
    )


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        args = [str(a) for a in args]
        # the CLI's default provider is auto (OpenVINO where the tests lift its gate); these compare on the CPU
        where = [] if "--provider" in args else ["--provider", "cpu"]
        return runner.invoke(cli, ["bench", *args, *where], catch_exceptions=False)

    return invoke


# ------------------------------------------------------------------------------ a real bench
def test_report_has_every_field(report):
    data = json.loads(json.dumps(report.to_dict()))  # what --json writes
    assert set(data) == {
        "edgenn_version",
        "busy",
        "started",
        "seconds",
        "load_average_end",
        "method",
        "memory_method",
        "environment",
        "options",
        "variants",
        "results",
        "skipped",
        "profiles",
        "attributions",
    }
    assert data["profiles"] == [] and data["attributions"] == []  # without --profile
    env = data["environment"]
    for key in (
        "cpu_model",
        "cpu_flags",
        "logical_cores",
        "physical_cores",
        "usable_cores",
        "thread_variables",
        "versions",
        "providers_available",
        "avx512",
        "vnni",
        "gpus",
        "os",
        "load_average",
    ):
        assert key in env
    assert "onnxruntime" in env["versions"] and "torch" in env["versions"]
    assert "CPUExecutionProvider" in env["providers_available"]
    assert data["options"]["threads"] == [1] and data["options"]["batches"] == [1, 3]
    assert [v["name"] for v in data["variants"]] == ["identity", "mlp", "eager:mlp"]
    assert [v["kind"] for v in data["variants"]] == ["onnx", "onnx", "eager"]
    assert data["skipped"] == []
    assert len(data["results"]) == 6  # 3 variants x 2 batch sizes
    for r in data["results"]:
        assert set(r) == {
            "variant",
            "provider",
            "precision",
            "providers_used",
            "placement",
            "device",
            "threads",
            "batch",
            "latency_ms",
            "throughput_per_s",
            "runs",
            "rounds",
            "session_seconds",
            "session_memory_mb",
            "run_memory_mb",
            "cpu_ms",
            "baseline",
            "speedup",
            "waited_for_cpu",
        }
        lat = r["latency_ms"]
        assert set(lat) == {"n", "median", "p90", "p99", "mean", "std", "min", "max"}
        assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["n"] == r["runs"] == 20 and r["rounds"] == 5
        assert r["throughput_per_s"] == pytest.approx(r["batch"] / (lat["median"] / 1e3))
        assert r["session_seconds"] > 0 and r["device"] == "cpu" and r["precision"] == "f32"
        assert r["provider"] == ("torch" if r["variant"] == "eager:mlp" else "cpu")
        if r["provider"] == "cpu":
            assert r["placement"].startswith("cpu CPU (") and r["placement"].endswith(" nodes")
        assert r["cpu_ms"] > 0
        if bench_module.RssProbe().available:
            assert r["session_memory_mb"] >= 0 and r["run_memory_mb"] >= 0


def test_eager_is_the_baseline(report):
    for r in report.results:
        if r.variant == "eager:mlp":
            assert r.baseline is None and r.speedup is None
            assert r.providers_used == ("torch-cpu",)
        else:
            assert r.baseline == "eager:mlp" and r.providers_used[0] == "CPUExecutionProvider"
            s = r.speedup
            assert s.rounds == 5 and s.ci_low <= s.median <= s.ci_high and s.median > 0


def test_without_eager_the_first_variant_is_the_baseline(models):
    got = bench([models["identity"], models["identity_copy"]], options=BenchOptions(**QUICK))
    assert [(r.variant, r.baseline) for r in got.results] == [
        ("identity", None),
        ("identity_copy", "identity"),
    ]
    # "N" is the copy's name for its batch dim: any symbolic first dim is the batch
    assert got.variants[1].inputs == (TensorSpec("input", ("batch", 64)),)


def test_eager_alone_can_be_benched(mlp):
    got = bench([], eager="mlp", weights=mlp["weights"], options=BenchOptions(batches=(2,), **QUICK))
    assert [(r.variant, r.batch, r.runs) for r in got.results] == [("eager:mlp", 2, 20)]


def test_eager_from_a_file_factory(tmp_path, models):
    source = tmp_path / "net.py"
    source.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(64, 64), torch.zeros(2, 64)\n")
    got = bench([models["identity"]], eager=f"{source}:build", options=BenchOptions(**QUICK))
    assert got.results[0].baseline == f"eager:{source}:build"


# ------------------------------------------------------------------------- injected timings
def test_injected_timings_give_exact_figures(models, monkeypatch):
    """A fake clock that only the calls advance: every figure of the report is then known."""
    from edgenn.runners import OrtRunner

    class FakeClock:
        now = 0

        def __call__(self):
            return self.now

    clock, steps, log = FakeClock(), {"identity": 3000, "identity_copy": 1000}, []
    real = OrtRunner.prepared_call

    def fake_prepared_call(self, feeds):
        call = real(self, feeds)

        def timed():
            call()
            clock.now += steps[self.name]
            log.append(self.name)

        return timed

    monkeypatch.setattr(timing, "CLOCK", clock)
    monkeypatch.setattr(OrtRunner, "prepared_call", fake_prepared_call)
    got = bench([models["identity"], models["identity_copy"]], options=BenchOptions(runs=12, warmup=2, rounds=4))
    slow, fast = got.results
    assert slow.latency_ms.median == 0.003 and slow.latency_ms.std == 0 and slow.latency_ms.p99 == 0.003
    assert fast.latency_ms.median == 0.001
    assert slow.throughput == pytest.approx(1 / 3e-6) and fast.throughput == pytest.approx(1e6)
    assert (fast.speedup.median, fast.speedup.ci_low, fast.speedup.ci_high, fast.speedup.rounds) == (
        3.0,
        3.0,
        3.0,
        4,
    )
    # warm-up (2 each, one variant at a time), then 4 rounds of 3 calls each, who goes first rotating
    timed = log[4:]
    assert [timed[i] for i in range(0, 24, 6)] == ["identity", "identity_copy", "identity", "identity_copy"]
    assert timed[:6] == ["identity"] * 3 + ["identity_copy"] * 3


def test_plan_rounds_with_runs_is_exact():
    blocks = plan_rounds([1e-3, 1e-6], runs=103, seconds=1.0, rounds=25)
    assert len(blocks) == 25 and all(len(b) == 2 for b in blocks)
    assert sum(b[0] for b in blocks) == sum(b[1] for b in blocks) == 103
    assert plan_rounds([1e-3], runs=7, seconds=1.0, rounds=25) == [(1,)] * 7


def test_plan_rounds_shares_the_time_budget():
    # 1 s for two variants: 0.5 s each; 1 ms and 0.1 ms per call fit 500 and 5000 calls
    assert plan_rounds([1e-3, 1e-4], runs=None, seconds=1.0, rounds=25) == [(20, 200)] * 25
    # a variant slower than the budget still gets MIN_ROUNDS rounds
    assert plan_rounds([2.0], runs=None, seconds=1.0, rounds=25) == [(1,)] * timing.MIN_ROUNDS


def test_run_rounds_records_round_bounds():
    counts = [0, 0]
    calls = [lambda: counts.__setitem__(0, counts[0] + 1), lambda: counts.__setitem__(1, counts[1] + 1)]
    measured = run_rounds(calls, [(2, 5), (3, 1)])
    assert counts == [5, 6] and [t.size for t in measured.times] == [5, 6]
    assert measured.bounds == [[0, 2, 5], [0, 5, 6]]
    assert all((t >= 0).all() for t in measured.times) and all(c >= 0 for c in measured.cpu_ns)


def test_round_medians_pair_by_round():
    measured = Rounds(times=[np.array([1, 3, 5, 7, 9])], bounds=[[0, 2, 5]], cpu_ns=[0])
    assert measured.round_medians(0) == [2.0, 7.0]


def test_waiting_for_a_core_is_flagged(report):
    from dataclasses import replace

    one = report.results[0]
    assert not replace(one, cpu_ms=one.latency_ms.mean).waited_for_cpu
    assert replace(one, cpu_ms=one.latency_ms.mean / 2).waited_for_cpu
    assert not replace(one, cpu_ms=one.latency_ms.mean / 2, threads=2).waited_for_cpu  # pools spin and wait


# ----------------------------------------------------------------------------------- the CLI
def test_cli_table_json_and_csv(run, models, tmp_path):
    out_json, out_csv = tmp_path / "bench.json", tmp_path / "bench.csv"
    result = run(
        models["identity"],
        models["identity_copy"],
        "--batch",
        "1,2",
        "--runs",
        10,
        "--warmup",
        1,
        "--rounds",
        2,
        "--json-out",
        out_json,
        "--csv",
        out_csv,
    )
    assert result.exit_code == 0, result.output
    assert "median ms" in result.output and "baseline" in result.output
    assert "speedup" in result.output and "cpu" in result.output
    data = json.loads(out_json.read_text())
    assert len(data["results"]) == 4
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(bench_module.CSV_COLUMNS) and len(rows) == 4
    assert {r["batch"] for r in rows} == {"1", "2"} and rows[0]["speedup"] == "" and float(rows[1]["speedup"]) > 0


def test_cli_json_to_stdout(run, models):
    result = run(models["identity"], "--runs", 5, "--warmup", 0, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["runs"] == 5


def test_plot_needs_matplotlib(run, models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = run(models["identity"], "--runs", 5, "--plot", tmp_path / "p.png")
    assert result.exit_code == 1
    assert "--plot needs matplotlib: pip install 'edgenn[plot]'" in result.output
    assert not (tmp_path / "p.png").exists()


def test_plot_is_written(run, models, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra")
    result = run(models["identity"], "--batch", "1,4", "--runs", 5, "--plot", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------- bad input
def _one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_model(run, tmp_path):
    _one_line_error(run(tmp_path / "nope.onnx"), "model file", "nope.onnx", "not found")


def test_corrupt_model(run, models):
    _one_line_error(run(models["corrupt"]), "corrupt.onnx is a truncated or corrupt ONNX file")


@pytest.mark.parametrize(
    "flag, value, fragments",
    [
        ("--provider", "fpga", ("unknown provider 'fpga'", "auto, cpu, openvino, cuda, tensorrt", "also takes all")),
        ("--provider", "cpu,openvino:GPU:fp8", ("bad provider 'openvino:GPU:fp8'", "f32, bf16, f16")),
        ("--precision", "fp8", ("unknown precision 'fp8'", "f32, bf16, f16")),
    ],
)
def test_unknown_provider_or_precision_is_a_usage_error(run, models, flag, value, fragments):
    result = run(models["identity"], flag, value)
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and all(f in error[0] for f in fragments), result.output


@pytest.mark.parametrize(
    "flag, value, fragment",
    [
        ("--runs", 0, "--runs must be 1 or more"),
        ("--seconds", 0, "--seconds must be a positive number"),
        ("--warmup", -1, "--warmup must be 0 or more"),
    ],
)
def test_nothing_to_measure(run, models, flag, value, fragment):
    _one_line_error(run(models["identity"], flag, value), fragment)


def test_runs_and_seconds_together(run, models):
    _one_line_error(run(models["identity"], "--runs", 5, "--seconds", 1), "--runs or --seconds, not both")


def test_no_models_at_all(run):
    _one_line_error(run(), "nothing to bench")


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("lenet", "unknown model 'lenet'; valid names"),
        ("missing/net.py:build", "file 'missing/net.py' not found"),
    ],
)
def test_eager_source_that_does_not_load(run, models, source, fragment):
    _one_line_error(run(models["identity"], "--eager", source), f"eager source {source!r} does not load", fragment)


def test_eager_factory_that_raises(run, models, tmp_path):
    source = tmp_path / "broken.py"
    source.write_text("def build():\n    raise RuntimeError('no GPU here')\n")
    _one_line_error(run(models["identity"], "--eager", f"{source}:build"), "does not load", "no GPU here")


def test_eager_weights_that_do_not_fit(run, models, tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"garbage")
    _one_line_error(run(models["identity"], "--eager", "mlp", "--weights", bad), "does not load", "model.safetensors")


def test_fixed_batch_points_are_skipped_with_the_reason(run, models):
    result = run(models["fixed"], "--batch", "1,4", "--runs", 5, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["batch"] for r in data["results"]] == [4]
    assert data["skipped"] == [
        {
            "variant": "fixed",
            "provider": "cpu",
            "threads": 1,
            "batch": 1,
            "reason": "the model's batch dimension is fixed at 4; bench it with --batch 4",
        }
    ]
    table = run(models["fixed"], "--batch", "1,4", "--runs", 5).output
    assert "skipped fixed / cpu / threads 1 / batch 1: the model's batch dimension is fixed at 4" in table


def test_fixed_batch_and_no_other_point_is_an_error(run, models):
    _one_line_error(run(models["fixed"], "--batch", "2", "--runs", 5), "nothing measured", "fixed at 4")


def test_dynamic_dim_needs_input(run, models):
    _one_line_error(run(models["sequence"], "--runs", 5), "dynamic dimension 'sequence'", "--input input:Bx8x8")
    result = run(models["sequence"], "--runs", 5, "--input", "input:Bx5x8", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["variants"][0]["inputs"][0]["shape"] == ["batch", 5, 8]


def test_input_for_an_unknown_name(run, models):
    _one_line_error(run(models["identity"], "--runs", 5, "--input", "tokens:Bx3"), "--input names tokens")


def test_output_folder_must_exist_before_measuring(run, models, tmp_path):
    _one_line_error(run(models["identity"], "--runs", 5, "--csv", tmp_path / "no" / "b.csv"), "does not exist")


def test_output_that_is_a_folder_fails_before_measuring(run, models, tmp_path):
    _one_line_error(run(models["identity"], "--runs", 5, "--json-out", tmp_path), "is a folder")
    assert not list(tmp_path.iterdir())


def test_inputs_the_model_cannot_take_are_one_line(run, tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # x is declared [batch, features] but the MatMul inside needs 64 features: --input 7 fails in onnxruntime
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "features"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])
    w = numpy_helper.from_array(np.ones((64, 10), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "mm.onnx"))
    _one_line_error(run(tmp_path / "mm.onnx", "--runs", 5, "--input", "x:Bx7"), "mm fails on x 1x7 float32")


# --------------------------------------------------------------------------------- providers
@pytest.mark.skipif(CUDA, reason="this onnxruntime has CUDA: the skip path cannot be shown")
def test_missing_gpu_providers_are_skipped_with_the_reason(models):
    got = bench([models["identity"]], options=BenchOptions(providers=("all",), **QUICK))
    assert {r.provider for r in got.results} <= {"cpu", "openvino"} and "cpu" in {r.provider for r in got.results}
    reasons = {s.provider: s.reason for s in got.skipped}
    assert reasons["cuda"].startswith("CUDAExecutionProvider not available: onnxruntime has only ")
    assert reasons["tensorrt"].startswith("TensorrtExecutionProvider not available")


@pytest.mark.skipif(CUDA, reason="this onnxruntime has CUDA: the skip path cannot be shown")
def test_only_a_missing_provider_is_an_error(run, models):
    _one_line_error(
        run(models["identity"], "--provider", "cuda", "--runs", 5),
        "nothing measured: CUDAExecutionProvider not available",
    )


@pytest.mark.skipif(not CUDA, reason="needs onnxruntime-gpu with CUDAExecutionProvider and a GPU")
def test_cuda_binds_inputs_and_outputs_on_the_device(models):
    got = bench([models["identity"]], options=BenchOptions(providers=("cuda",), batches=(1, 8), **QUICK))
    assert not [s for s in got.skipped if s.provider == "cuda"], got.skipped
    assert {(r.device, r.providers_used[0]) for r in got.results} == {("cuda", "CUDAExecutionProvider")}


@pytest.mark.skipif(not TENSORRT, reason="needs onnxruntime-gpu with TensorrtExecutionProvider and a GPU")
def test_tensorrt_runs_or_says_why_not(models):
    options = BenchOptions(providers=("tensorrt",), **QUICK)
    try:
        got = bench([models["identity"]], options=options)
    except bench_module.EdgennError as exc:  # TensorRT may refuse the model: then the reason is given
        assert "TensorrtExecutionProvider" in str(exc)
        return
    assert got.results[0].device == "cuda"


# ------------------------------------------------------------------------------- environment
CPUINFO = """processor\t: 0
physical id\t: 0
core id\t\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_vnni amx_tile amx_int8 avx_vnni
processor\t: 1
physical id\t: 0
core id\t\t: 0
processor\t: 2
physical id\t: 0
core id\t\t: 1
"""


def test_cpuinfo_is_read():
    assert cpu_model(CPUINFO) == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_flags(CPUINFO) == (
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx_vnni",
        "amx_tile",
        "amx_int8",
    )
    assert physical_cores(CPUINFO) == 2  # three logical CPUs, two cores
    assert physical_cores("Features\t: asimd asimddp\n") is None
    assert cpu_flags("Features\t: fp asimd asimddp sve\n") == ("asimd", "asimddp", "sve")


def test_environment_of_this_machine():
    env = collect_environment()
    assert env.logical_cores >= env.usable_cores >= 1
    assert env.providers_available == tuple(available_providers())
    assert env.to_dict()["vnni"] == env.has_vnni


def test_busy_machine_is_flagged(report, run, models, monkeypatch):
    from dataclasses import replace

    from edgenn.cli import render_bench

    quiet = replace(report.environment, load_average=(0.5, 0.5, 0.5))
    assert not replace(report, environment=quiet, load_average_end=(0.5, 0.5, 0.5)).busy
    crowded = (quiet.usable_cores + 2.0, 1.0, 1.0)
    assert replace(report, environment=quiet, load_average_end=crowded).busy
    monkeypatch.setattr("edgenn.environment.os.getloadavg", lambda: crowded)
    assert "(busy: other programs compete for the cores)" in run(models["identity"], "--runs", 5).output
    # calls that waited for a core are marked in the table, with a warning
    waited = tuple(replace(r, cpu_ms=r.latency_ms.mean / 2) for r in report.results)
    text = render_bench(replace(report, results=waited))
    assert "warning: * marks 6 one-thread runs" in text and "*" in text.splitlines()[2]
    assert "warning" not in render_bench(
        replace(report, results=tuple(replace(r, cpu_ms=r.latency_ms.mean) for r in report.results))
    )


def test_bench_module_does_not_import_torch():
    import subprocess

    code = "import sys, edgenn.bench; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
