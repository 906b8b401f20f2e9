"""The session layer (edgenn.runtime.session, edgenn.runtime.providers): one config, one opener, what ran.

The OpenVINO tests run the real plugin on the committed, trained zoo models (digits test split);
where the plugin cannot run they skip, naming the reason. CUDA and TensorRT run where a GPU and
onnxruntime-gpu are present, and skip with the reason elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino_gate
import pytest

from edgenn.errors import InputError, ModelFileError, ProviderError
from edgenn.runtime import Model, providers
from edgenn.runtime.session import SessionConfig, open_session
from edgenn.validate import PRECISION_TOLERANCES

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
ZOO = ("mlp", "lenet5", "simple_cnn", "resnet", "lstm", "gru", "activations")
OPENVINO_MISSING = openvino_gate.reason()
needs_openvino = pytest.mark.skipif(OPENVINO_MISSING is not None, reason=f"OpenVINO: {OPENVINO_MISSING}")
# bf16 needs the instructions too (avx512_bf16 or AMX): some AMD EPYC machines have them, some do not
OPENVINO_BF16_MISSING = openvino_gate.bf16_reason()
needs_openvino_bf16 = pytest.mark.skipif(OPENVINO_BF16_MISSING is not None, reason=f"OpenVINO: {OPENVINO_BF16_MISSING}")
CUDA = "CUDAExecutionProvider" in providers.available_providers()
TENSORRT = "TensorrtExecutionProvider" in providers.available_providers()


@pytest.fixture(scope="module")
def test_inputs(digits):
    """model name -> its digits test split inputs, through the preprocessing stored in the model."""
    return {
        name: digits.test.inputs(Model(MODELS / name / "model.onnx", providers="cpu").preprocessing) for name in ZOO
    }


def bare_cpu_session(path: Path, threads: int = 1):
    """A plain InferenceSession as a user would open one: the reference the seam must equal."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------- the configuration
def test_config_parses_provider_device_and_precision():
    assert SessionConfig.parse("cpu") == SessionConfig()
    assert SessionConfig.parse("openvino:bf16") == SessionConfig(provider="openvino", precision="bf16")
    assert SessionConfig.parse("OV:GPU:f16") == SessionConfig(provider="openvino", device="GPU", precision="f16")
    assert SessionConfig.parse("cuda:1", threads=2) == SessionConfig(provider="cuda", device="1", threads=2)
    assert SessionConfig.parse("TensorrtExecutionProvider").provider == "tensorrt"
    assert SessionConfig(provider="openvino", precision="bf16").label == "openvino bf16"
    assert SessionConfig.parse("openvino:GPU").label == "openvino:GPU"


def test_config_round_trips_through_json():
    config = SessionConfig(
        provider="openvino",
        device="CPU",
        precision="bf16",
        threads=1,
        graph_optimization="extended",
        disabled_optimizers=("QDQPropagationTransformer",),
        config_entries=(("session.intra_op.allow_spinning", "0"),),
        provider_options=(("cache_dir", "/tmp/ov"),),
        fallback=True,
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["version"] == 1 and SessionConfig.from_dict(data) == config.checked()
    with pytest.raises(ModelFileError, match="session configuration version 9 is not one this edgenn reads"):
        SessionConfig.from_dict({**data, "version": 9})


@pytest.mark.parametrize(
    "config, error, fragments",
    [
        (SessionConfig(provider="fpga"), ProviderError, ("unknown provider 'fpga'", "auto, cpu, openvino, cuda")),
        (SessionConfig(precision="fp8"), ProviderError, ("unknown precision 'fp8'", "f32, bf16, f16")),
        (SessionConfig(threads=0), InputError, ("threads must be a positive whole number",)),
        (SessionConfig(graph_optimization="max"), InputError, ("unknown graph optimisation level 'max'", "all")),
    ],
)
def test_bad_configs_name_the_valid_choices(config, error, fragments):
    with pytest.raises(error) as caught:
        config.checked()
    assert all(f in str(caught.value) for f in fragments), caught.value


def test_a_precision_the_device_lacks_names_the_device_and_what_it_offers():
    with pytest.raises(ProviderError) as caught:
        open_session(MODELS / "lenet5" / "model.onnx", SessionConfig(precision="bf16"))
    assert "cpu CPU (" in str(caught.value) and "does not compute in bf16: it offers f32" in str(caught.value)


# ------------------------------------------------------------------------------- the seam, CPU
@pytest.mark.parametrize("name", ZOO)
def test_the_seam_gives_the_numbers_of_a_plain_session(name, test_inputs):
    """Runner, Model and a bare InferenceSession agree to the bit on the CPU provider."""
    path = MODELS / name / "model.onnx"
    x = test_inputs[name][:64]
    expected = bare_cpu_session(path).run(None, {"input": x})[0]
    runner = open_session(path, SessionConfig(threads=1))
    assert np.array_equal(runner.infer({"input": x})["output"], expected)
    assert np.array_equal(Model(path, providers="cpu", threads=1).predict(x)["output"], expected)
    prepared = runner.prepared_call({"input": x})
    assert np.array_equal(prepared()[0], expected)


def test_runner_reads_specs_once_and_reports_where_it_ran():
    runner = open_session(MODELS / "lstm" / "model.onnx", SessionConfig(threads=1))
    assert [str(s) for s in runner.input_specs()] == ["input:batchxsequencex8:float32"]
    assert [str(s) for s in runner.outputs] == ["output:batchx10:float32"]
    info = runner.info
    assert (info.provider, info.device, info.precision, info.threads) == ("cpu", "CPU", "f32", 1)
    assert info.providers == ("CPUExecutionProvider",)
    assert dict(info.nodes) == {"CPUExecutionProvider": info.node_count} and info.node_count > 10
    assert info.refused == () and info.note == "" and info.seconds > 0
    assert info.summary.startswith("cpu CPU (") and info.summary.endswith(
        f"f32, {info.node_count} of {info.node_count} nodes"
    )


def test_session_options_reach_onnxruntime():
    path = MODELS / "lenet5" / "model.quant.onnx"
    config = SessionConfig(
        threads=1,
        disabled_optimizers=("QDQPropagationTransformer",),
        config_entries=(("session.intra_op.allow_spinning", "0"),),
        graph_optimization="basic",
    )
    runner = open_session(path, config)
    options = runner.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # basic optimisations fuse no QDQ pairs: the graph keeps its QuantizeLinear nodes on the CPU
    assert any("QuantizeLinear" in n for n in (s.split(" (")[1] for s in _placed(runner)))


def _placed(runner):
    return [
        f"{node.name} ({node.op_type})"
        for g in runner.session.get_provider_graph_assignment_info()
        for node in g.get_nodes()
    ]


def test_a_one_thread_cpu_session_uses_one_core():
    runner = open_session(MODELS / "resnet" / "model.onnx", SessionConfig(threads=1))
    assert _cpu_per_wall(runner.prepared_call({"input": np.zeros((64, 1, 32, 32), np.float32)})) < 1.3


def _cpu_per_wall(call, seconds: float = 0.4) -> float:
    for _ in range(3):
        call()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        call()
    return (time.process_time() - cpu0) / (time.perf_counter() - wall0)


def test_files_that_are_not_models_are_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not a protobuf" * 8)
    with pytest.raises(ModelFileError, match="truncated or corrupt ONNX file"):
        open_session(bad)
    with pytest.raises(ModelFileError, match="model file not found"):
        open_session(tmp_path / "missing.onnx", SessionConfig(provider="openvino", fallback=True))


# --------------------------------------------------------------------------------- providers
def test_auto_prefers_tensorrt_then_cuda_then_openvino_then_cpu(monkeypatch):
    here = {"cpu"}
    monkeypatch.setattr(providers, "unavailable_reason", lambda name: None if name in here else f"no {name}")
    assert providers.resolve_choice("auto") == "cpu"
    for name in ("openvino", "cuda", "tensorrt"):
        here.add(name)
        assert providers.resolve_choice("auto") == name
    assert providers.resolve_providers("tensorrt") == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_a_missing_provider_is_an_error_unless_a_fallback_is_allowed():
    if CUDA:
        pytest.skip("this onnxruntime has CUDA: the missing-provider path cannot be shown")
    path = MODELS / "lenet5" / "model.onnx"
    with pytest.raises(ProviderError, match="CUDAExecutionProvider not available: onnxruntime has only"):
        Model(path, providers="cuda")
    model = Model(path, providers="cuda", fallback=True, precision="f32")
    assert model.session_info.provider == "cpu" and model.providers == ("CPUExecutionProvider",)
    assert model.session_info.note.startswith("CUDAExecutionProvider not available")
    assert model.session_info.note.endswith("the CPU provider runs it instead")


def test_the_plugin_missing_names_the_extra_to_install(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_plugin(name, *args, **kwargs):
        if name == "onnxruntime_ep_openvino":
            raise ImportError("No module named 'onnxruntime_ep_openvino'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_plugin)
    monkeypatch.setattr(providers, "_REGISTERED", {})
    with pytest.raises(ProviderError) as caught:
        Model(MODELS / "lenet5" / "model.onnx", providers="openvino")
    assert str(caught.value) == "the openvino provider is not installed: pip install 'edgenn[openvino]'"
    assert "openvino" not in providers.present()


def test_a_plugin_with_no_device_here_says_which_cpu(monkeypatch):
    monkeypatch.setattr(providers, "_REGISTERED", {"openvino": ()})
    with pytest.raises(ProviderError) as caught:
        open_session(MODELS / "lenet5" / "model.onnx", SessionConfig(provider="openvino"))
    message = str(caught.value)
    assert message.startswith("the openvino plugin offers no device on this machine: it serves Intel CPUs")
    assert f"this CPU is {providers._cpu_model()}" in message


def test_gpu_provider_options_say_what_precision_means():
    device = providers.Device("cuda", "0", "gpu", "CUDA device 0", ("f32",))
    from edgenn.runtime.session import _provider_list

    cuda = _provider_list("cuda", device, "f32", {})
    assert cuda == [("CUDAExecutionProvider", {"device_id": "0", "use_tf32": "0"}), "CPUExecutionProvider"]
    trt = _provider_list("tensorrt", device, "f16", {"trt_engine_cache_enable": "1"})
    assert trt[0] == (
        "TensorrtExecutionProvider",
        {"device_id": "0", "trt_fp16_enable": "1", "trt_engine_cache_enable": "1"},
    )
    assert [p if isinstance(p, str) else p[0] for p in trt[1:]] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_survey_lists_every_provider_and_why_not():
    found = {s.spec.name: s for s in providers.survey()}
    assert list(found) == list(providers.AUTO_ORDER)
    assert found["cpu"].reason is None and found["cpu"].devices[0].precisions == ("f32",)
    for status in found.values():
        assert (status.reason is None) == bool(status.devices)
        assert json.loads(json.dumps(status.to_dict()))["provider"] == status.spec.name


# ---------------------------------------------------------------------------------- OpenVINO
@needs_openvino_bf16
@pytest.mark.parametrize("name", ZOO)
def test_openvino_parity_with_the_cpu_provider(name, test_inputs):
    """f32 within 1e-4 of the CPU provider; bf16 within its stated tolerance and visibly not f32."""
    path = MODELS / name / "model.onnx"
    reference = open_session(path, SessionConfig(threads=1))
    f32 = open_session(path, SessionConfig(provider="openvino", threads=1))
    bf16 = open_session(path, SessionConfig(provider="openvino", precision="bf16", threads=1))
    assert f32.info.provider == "openvino" and f32.info.refused == ()
    assert f32.info.providers[0] == "OpenVINOExecutionProvider" and bf16.info.precision == "bf16"
    bf16_tolerance, _ = PRECISION_TOLERANCES["bf16"]
    for batch in (1, 7, 64):
        feeds = {"input": test_inputs[name][:batch]}
        expected = reference.infer(feeds)["output"]
        got_f32, got_bf16 = f32.infer(feeds)["output"], bf16.infer(feeds)["output"]
        np.testing.assert_allclose(got_f32, expected, atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(got_bf16, expected, atol=bf16_tolerance.atol, rtol=bf16_tolerance.rtol)
        if batch == 64:
            assert np.abs(got_bf16 - got_f32).max() > 1e-3  # bf16 really ran in bf16
            assert np.mean(got_bf16.argmax(1) == expected.argmax(1)) >= 63 / 64


@needs_openvino
def test_openvino_honours_threads_and_reports_its_device():
    path = MODELS / "resnet" / "model.onnx"
    runner = open_session(path, SessionConfig(provider="openvino", threads=1))
    load_config = json.loads(runner.session.get_provider_options()["OpenVINOExecutionProvider"]["load_config"])
    assert load_config == {"CPU": {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": "1"}}
    assert _cpu_per_wall(runner.prepared_call({"input": np.zeros((64, 1, 32, 32), np.float32)})) < 1.3
    info = runner.info
    assert (info.provider, info.device) == ("openvino", "CPU")
    assert dict(info.nodes) == {"OpenVINOExecutionProvider": info.node_count}
    assert info.summary.startswith(f"openvino CPU ({info.device_description}) f32, ")


@needs_openvino
def test_openvino_refuses_a_precision_its_device_lacks():
    device = providers.pick_device("openvino", None)
    lacking = [p for p in providers.PRECISIONS if p not in device.precisions]
    if not lacking:
        pytest.skip(f"{device.description} offers every precision: {', '.join(device.precisions)}")
    with pytest.raises(ProviderError) as caught:
        open_session(MODELS / "lenet5" / "model.onnx", SessionConfig(provider="openvino", precision=lacking[0]))
    assert str(caught.value) == (
        f"openvino CPU ({device.description}) does not compute in {lacking[0]}: it offers "
        f"{', '.join(device.precisions)}"
    )


@needs_openvino
def test_a_model_openvino_refuses_names_the_node_or_falls_back(test_inputs, dynamic_lstm):
    """The dynamic-int8 LSTM has a DynamicQuantizeLSTM node (an onnxruntime contrib op) OpenVINO cannot run."""
    path = dynamic_lstm
    with pytest.raises(ProviderError) as caught:
        Model(path, providers="openvino")
    message = str(caught.value)
    assert message.startswith("openvino cannot run node ") and "(DynamicQuantizeLSTM)" in message
    assert "nodes left to the CPU provider" in message and "fallback" in message
    model = Model(path, providers="openvino", fallback=True, threads=1)
    info = model.session_info
    assert info.provider == "openvino" and len(info.refused) == 1 and "DynamicQuantizeLSTM" in info.refused[0]
    assert info.note.startswith(f"the CPU provider runs 1 of {info.node_count} nodes")
    x = test_inputs["lstm"][:64]
    got, want = model.predict(x)["output"], bare_cpu_session(path).run(None, {"input": x})[0]
    # the int8 head runs in OpenVINO, the int8 LSTM in onnxruntime: two engines' dynamic int8 round
    # differently (up to 0.6 on logits near 15 for the rebuilt LSTM, on an AMD EPYC without AVX-512)
    np.testing.assert_allclose(got, want, atol=1.0, rtol=0.05)
    assert np.mean(got.argmax(axis=1) == want.argmax(axis=1)) >= 62 / 64


@needs_openvino
def test_openvino_device_that_is_not_here():
    with pytest.raises(ProviderError, match=r"openvino has no device 'NPU' here; it offers CPU"):
        open_session(MODELS / "lenet5" / "model.onnx", SessionConfig.parse("openvino:NPU"))


@needs_openvino_bf16
def test_the_runtime_runs_openvino_without_torch():
    """A subprocess with torch, onnxscript and scikit-learn blocked: onnxruntime, numpy and the plugin only."""
    script = f"""
import sys
for name in ("torch", "onnxscript", "sklearn", "onnx", "click"):
    sys.modules[name] = None
sys.path.insert(0, {str(REPO / "tests")!r})
import openvino_gate
from edgenn.runtime import Model
import numpy as np
model = Model({str(MODELS / "lenet5" / "model.onnx")!r}, providers="openvino", precision="bf16", threads=1)
out = model.predict(np.zeros((3, 1, 32, 32), np.float32))["output"]
print(model.session_info.provider, model.session_info.precision, out.shape)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-5:] == ["openvino", "bf16", "(3,", "10)"]


# ------------------------------------------------------------------------------ GPU providers
@pytest.mark.skipif(not CUDA, reason="needs onnxruntime-gpu with CUDAExecutionProvider and a GPU")
def test_cuda_runs_through_the_seam(test_inputs):
    path = MODELS / "resnet" / "model.onnx"
    runner = open_session(path, SessionConfig(provider="cuda"))
    assert runner.info.provider == "cuda" and runner.device == "cuda"
    x = test_inputs["resnet"][:64]
    np.testing.assert_allclose(
        runner.infer({"input": x})["output"], bare_cpu_session(path).run(None, {"input": x})[0], atol=1e-4, rtol=1e-3
    )
    assert runner.info.providers[0] == "CUDAExecutionProvider" and runner.info.refused == ()
    runner.prepared_call({"input": x})()  # bound on the device (IO binding): runs without a copy back


@pytest.mark.skipif(not TENSORRT, reason="needs onnxruntime-gpu with TensorrtExecutionProvider and a GPU")
def test_tensorrt_runs_through_the_seam_or_says_why():
    try:
        runner = open_session(MODELS / "lenet5" / "model.onnx", SessionConfig(provider="tensorrt", precision="f16"))
    except ProviderError as exc:  # only these two refusals are expected where TensorRT is listed
        assert str(exc).startswith(
            ("tensorrt could not compile", "onnxruntime could not start TensorrtExecutionProvider")
        )
        return
    assert runner.info.provider == "tensorrt" and runner.info.precision == "f16"
    assert runner.info.providers[0] == "TensorrtExecutionProvider" and runner.device == "cuda"


# --------------------------------------------------------------------- fall-backs and "auto"
def test_a_gpu_provider_that_does_not_start_falls_back_whole(monkeypatch):
    """onnxruntime-gpu lists CUDA even where its libraries are missing, then runs on the CPU: simulated."""
    if CUDA:
        pytest.skip("this onnxruntime has CUDA: a provider that does not start cannot be simulated")
    monkeypatch.setattr(providers, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    path = MODELS / "lenet5" / "model.onnx"
    with pytest.raises(ProviderError, match=r"^onnxruntime could not start CUDAExecutionProvider \(its libraries"):
        open_session(path, SessionConfig(provider="cuda"))
    runner = open_session(path, SessionConfig(provider="cuda", fallback=True))
    info = runner.info
    assert (info.provider, info.device, runner.device) == ("cpu", "CPU", "cpu")
    assert (
        info.requested == "cuda"
        and info.note == "onnxruntime could not start CUDAExecutionProvider; the CPU provider runs it"
    )
    assert runner.prepared_call({"input": np.zeros((1, 1, 32, 32), np.float32)})()[0].shape == (1, 10)
    # "auto" passes over it too, and says so
    auto = open_session(path, SessionConfig(provider="auto"))
    assert auto.info.provider in ("openvino", "cpu") and "could not start CUDAExecutionProvider" in auto.info.note


def test_a_provider_that_cannot_compile_the_model(monkeypatch):
    """A compile failure (simulated: the provider's session creation raises) is one line, or a fall-back."""
    from edgenn.runtime import session as session_module

    real = session_module._create
    here = {"cpu", "cuda"}
    monkeypatch.setattr(providers, "unavailable_reason", lambda name: None if name in here else f"no {name}")
    monkeypatch.setattr(
        providers,
        "devices",
        lambda name: (
            (providers.Device(name, "0", "gpu", "GPU 0", ("f32",)),)
            if name == "cuda"
            else (providers.Device("cpu", "CPU", "cpu", "a CPU", ("f32",)),)
        ),
    )

    def failing(source, config, provider, *args):
        if provider != "cpu":
            raise session_module._CreateFailed(RuntimeError("[ONNXRuntimeError] : 1 : FAIL : no kernel for Conv"))
        return real(source, config, provider, *args)

    monkeypatch.setattr(session_module, "_create", failing)
    path = MODELS / "lenet5" / "model.onnx"
    with pytest.raises(ProviderError) as caught:
        open_session(path, SessionConfig(provider="cuda"))
    assert str(caught.value) == (
        f"cuda could not compile {path}: no kernel for Conv; run it on the cpu provider, or allow the CPU "
        "provider to take over (fallback)"
    )
    runner = open_session(path, SessionConfig(provider="cuda", fallback=True))
    assert runner.info.provider == "cpu"
    assert runner.info.note == "cuda could not compile the model (no kernel for Conv); the CPU provider runs it"
    bad = MODELS / "lenet5" / "README.md"  # not a model: a file problem, not the provider's
    with pytest.raises(ModelFileError, match="is not an ONNX model"):
        open_session(bad, SessionConfig(provider="cuda", fallback=True))


@needs_openvino
def test_auto_passes_over_a_provider_that_cannot_run_the_whole_model(dynamic_lstm):
    model = Model(dynamic_lstm)  # providers="auto"
    info = model.session_info
    assert info.provider == "cpu" and info.requested == "auto"
    assert info.note.startswith("auto passed over openvino cannot run node ") and "DynamicQuantizeLSTM" in info.note
    assert Model(MODELS / "lstm" / "model.onnx").session_info.provider == "openvino"


def test_a_precision_in_the_provider_text_and_one_given_must_agree():
    assert SessionConfig.parse("openvino:bf16", precision=None).precision == "bf16"
    assert SessionConfig.parse("openvino:bf16", precision="bf16").precision == "bf16"
    assert SessionConfig.parse("openvino", precision="bf16").precision == "bf16"
    with pytest.raises(ProviderError, match=r"'openvino:bf16' asks for bf16 and the precision given is f16: give one"):
        SessionConfig.parse("openvino:bf16", precision="f16")


def test_two_spellings_of_one_configuration_are_one():
    assert SessionConfig.parse("openvino:CPU").checked() == SessionConfig(provider="openvino").checked()
    assert SessionConfig(provider="ov", device="cpu").checked().label == "openvino"
    a = SessionConfig(config_entries=(("b", "1"), ("a", "2"))).checked()
    assert a == SessionConfig(config_entries=(("a", "2"), ("b", "1"))).checked()


@needs_openvino
def test_the_plugin_is_registered_once_and_a_second_registration_is_harmless(monkeypatch):
    first = providers.devices("openvino")
    monkeypatch.setattr(providers, "_REGISTERED", {})  # as if another edgenn in this process had registered it
    assert providers.devices("openvino") == first  # onnxruntime's "already registered" is taken as done
