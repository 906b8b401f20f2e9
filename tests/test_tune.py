"""edgenn tune and Model(DEPLOY_DIR): what is chosen was measured, the runtime applies it, and bad folders are named.

Two zoo models are tuned once each on a small budget (the CPU provider, 1 thread, batch 1 and 64).
Speed is never asserted (the machine is shared); what is asserted is that the record, the files and
the sessions the runtime opens agree with each other and with accuracy measured again here.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgenn import recipes
from edgenn import tune as tune_module
from edgenn.calibration import digits_samples, read_preprocessing
from edgenn.cli import cli
from edgenn.errors import InputError, ModelFileError, ProviderError
from edgenn.report import render_tune
from edgenn.runtime import Model
from edgenn.runtime import deploy as deploy_module
from edgenn.runtime.deploy import DEPLOY_FILE, Machine, load_deployment, resolve, this_machine
from edgenn.tune import REFERENCE, TuneOptions, minimum_budget, tune

SMALL = dict(batches=(1, 64), threads=(1,), providers=("cpu",), time_budget=30.0)
FEW_RECIPES = ("static-qdq", "dynamic", "static-qdq-no-propagation")


@pytest.fixture(scope="module")
def tuned(exported, tmp_path_factory):
    """tuned(name) -> (folder, TuneResult), tuned once per module."""
    cache = {}

    def folder(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(f"tuned-{name}") / "deploy"
            cache[name] = (out, tune(exported(name), out, TuneOptions(**SMALL)))
        return cache[name]

    return folder


@pytest.fixture(scope="module")
def two_routes(exported, tmp_path_factory):
    """A deployment whose choices are forced (fp32 at batch 1, dynamic int8 at batch 64), so that batches 1-8
    and 9+ differ whatever this machine measures: a real choice flips with the noise of a shared machine."""
    original = tune_module._measure_point
    forced_choice = {1: REFERENCE, 64: "dynamic@cpu"}

    def forced(candidates, runners, samples, threads, batch, seconds):
        _, ranking = original(candidates, runners, samples, threads, batch, seconds)
        choice = forced_choice[batch]
        return choice, [choice, *[i for i in ranking if i != choice]]

    out = tmp_path_factory.mktemp("two-routes") / "deploy"
    tune_module._measure_point = forced
    try:
        tune(exported("lenet5"), out, TuneOptions(**{**SMALL, "time_budget": 25.0}, recipes=("dynamic",)))
    finally:
        tune_module._measure_point = original
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def rewrite(folder: Path, change) -> None:
    record = folder / DEPLOY_FILE
    data = json.loads(record.read_text())
    change(data)
    record.write_text(json.dumps(data))


def test_recipes_registry_lists_session_variants_that_share_a_file():
    names = recipes.names()
    assert names[0] == "static-qdq" and "static-qdq-no-propagation" in names
    variant = recipes.get("static-qdq-no-propagation")
    assert variant.file_key == recipes.get("static-qdq").file_key == "static-qdq"
    assert variant.needs_session_options and "static-qdq-no-propagation" not in recipes.file_only()
    config = variant.session(deploy_module.SessionConfig())
    assert config.disabled_optimizers == (recipes.QDQ_PROPAGATION,)
    with pytest.raises(InputError, match="unknown recipe 'int4'.*static-qdq"):
        recipes.get("int4")


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_choice_is_among_measured_and_within_budget(name, tuned):
    folder, result = tuned(name)
    d = load_deployment(folder)  # every file present, digests match
    assert d.machine == replace(this_machine(d.machine.providers), providers=d.machine.providers)
    assert [p.threads for p in d.profiles] == [1]
    routes = d.profiles[0].routes
    assert routes[0].batch_min == 1 and routes[-1].batch_max is None
    assert sorted(b for r in routes for b in r.measured_at) == [1, 64]
    for route in routes:
        chosen = d.candidate(route.choice)
        assert chosen.shipped and chosen.within_budget and route.ranking[0] == route.choice
        for batch in route.measured_at:
            timing = chosen.timing(1, batch)
            assert timing is not None and timing.stage == "final"
            # never slower than the plain file: it is the plain file, or its whole interval is above 1
            assert route.choice == REFERENCE or timing.speedup_low > 1.0
    measured = {c.id for c in d.candidates if c.timings}
    assert REFERENCE in measured and len(measured) >= 4  # fp32 and the recipes' files, each measured
    assert all(c.within_budget for c in d.candidates if c.timings)
    assert {n for n, _ in d.files} == {c.file for c in d.candidates if c.shipped}
    assert result.budget_met
    assert set(json.loads((folder / DEPLOY_FILE).read_text())) >= {"format", "version", "machine", "candidates"}


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_recorded_test_accuracy_is_reproduced_by_the_runtime(name, tuned, exported):
    import onnx

    folder, _ = tuned(name)
    d = load_deployment(folder)
    model = Model(folder, threads=1)
    source = onnx.load(str(exported(name)), load_external_data=False)
    test = digits_samples(model.inputs, read_preprocessing(source), "test", "--eval-data")
    for route in model.routes:
        size = route.measured_at[0]  # the test split in batches of a size this route was tuned at
        chunks = list(test.chunks(size))
        assert all(model.route_for(len(next(iter(c.values())))) == route for c in chunks)
        scores = np.concatenate([model.predict(c)[model.outputs[0].name] for c in chunks])
        recorded = d.candidate(route.candidate.id).test_accuracy
        assert float(np.mean(scores.argmax(axis=1) == test.labels)) == pytest.approx(recorded, abs=1e-6)


def test_dispatch_runs_the_recorded_session_for_each_batch_range(two_routes):
    model = Model(two_routes, threads=1)
    assert [(r.batch_min, r.batch_max, r.candidate.id) for r in model.routes] == [
        (1, 8, REFERENCE),
        (9, None, "dynamic@cpu"),
    ]
    ran = []
    members = {id(model.member_for(b)): model.member_for(b) for b in (1, 64)}
    assert len(members) == 2
    for member in members.values():
        real = member._run

        def spy(names, feeds, options, real=real, member=member):
            ran.append(member.config)
            return real(names, feeds, options)

        member._run = spy
    x = np.random.default_rng(0).random((64, 1, 32, 32), dtype=np.float32)
    for batch, expected in ((1, REFERENCE), (8, REFERENCE), (9, "dynamic@cpu"), (64, "dynamic@cpu")):
        ran.clear()
        model.predict(x[:batch])
        record = load_deployment(two_routes).candidate(expected)
        assert ran == [replace(record.session, threads=1)]
        assert model.route_for(batch).path.name == record.file
    assert {m.inputs for m in members.values()} == {model.inputs}


def test_plain_onnx_file_is_unchanged(tuned):
    folder, _ = tuned("lenet5")
    plain = Model(folder / "model.onnx")
    assert plain.deployment is None and plain.routes == () and plain.member_for(64) is plain


def test_another_machine_falls_back_and_warns_once_strict_raises(two_routes, monkeypatch):
    elsewhere = Machine("Intel(R) Xeon(R) Platinum 8480+", ("amx_int8",), 56, (("onnxruntime", "9.9"),))
    routes, notes = resolve(load_deployment(two_routes), two_routes, threads=1, machine=elsewhere)
    assert [r.candidate.id for r in routes] == [REFERENCE, "dynamic@cpu"]  # still runnable: kept, with a note
    assert len(notes) == 1 and "Xeon" in notes[0] and "re-run edgenn tune" in notes[0]
    monkeypatch.setattr(deploy_module, "this_machine", lambda providers=(): elsewhere)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Model(two_routes, threads=1)
        model.predict(np.zeros((1, 1, 32, 32), np.float32))
        model.predict(np.zeros((64, 1, 32, 32), np.float32))
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert model.deployment_notes == tuple(notes)
    with pytest.raises(ProviderError, match="another machine.*strict"):
        Model(two_routes, threads=1, strict=True)


def test_missing_provider_takes_the_best_runnable_candidate(two_routes, tmp_path):
    folder = copy_of(two_routes, tmp_path)

    def to_cuda(data):  # as if tune had chosen a CUDA session for batch 9+ on a machine with a GPU
        ghost = dict(next(c for c in data["candidates"] if c["id"] == "dynamic@cpu"))
        ghost.update(id="dynamic@cuda", session={**ghost["session"], "provider": "cuda"})
        data["candidates"].append(ghost)
        route = data["profiles"][0]["routes"][1]
        route.update(choice="dynamic@cuda", ranking=["dynamic@cuda", *route["ranking"]])

    rewrite(folder, to_cuda)
    with pytest.warns(RuntimeWarning, match="dynamic@cuda cannot run here.*using dynamic@cpu"):
        model = Model(folder, threads=1)
    assert model.route_for(64).candidate.id == "dynamic@cpu" and model.route_for(64).recorded_choice == "dynamic@cuda"
    with pytest.raises(ProviderError, match="dynamic@cuda cannot run here"):
        Model(folder, threads=1, strict=True)


def test_thread_count_not_tuned_is_noted(two_routes):
    with pytest.warns(RuntimeWarning, match="tuned at 1 thread.*not 2"):
        model = Model(two_routes, threads=2)
    assert model.member_for(64).config.threads == 2


@pytest.mark.parametrize(
    "damage,match",
    [
        (
            lambda f: (f / "model.onnx").write_bytes((f / "model.onnx").read_bytes()[:-1] + b"\0"),
            "model.onnx does not match",
        ),
        (lambda f: (f / "model.dynamic.onnx").unlink(), "incomplete: model.dynamic.onnx is missing"),
        (lambda f: (f / DEPLOY_FILE).unlink(), "without deploy.json"),
        (lambda f: rewrite(f, lambda d: d.update(version=99)), "newer edgenn"),
        (lambda f: (f / DEPLOY_FILE).write_text("{not json"), "deploy.json is unreadable"),
        (lambda f: rewrite(f, lambda d: d.pop("profiles")), "deploy.json is malformed"),
    ],
)
def test_damaged_folders_are_one_line_errors(two_routes, tmp_path, damage, match):
    folder = copy_of(two_routes, tmp_path)
    damage(folder)
    with pytest.raises(ModelFileError, match=match) as caught:
        Model(folder)
    assert "\n" not in str(caught.value)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    outcome = CliRunner().invoke(cli, ["predict", str(folder), str(tmp_path / "x.npy")])
    assert outcome.exit_code == 1 and match.split(":")[0].split(".*")[0] in outcome.output
    assert outcome.exit_code != 0 and "Traceback" not in outcome.output


def test_deployment_folder_refuses_provider_arguments(two_routes):
    with pytest.raises(InputError, match="deployment folder.*sets its own providers"):
        Model(two_routes, providers="openvino")


def test_cli_refuses_an_existing_folder_and_a_budget_too_small(two_routes, exported, tmp_path):
    runner = CliRunner()
    before = sorted(p.name for p in two_routes.iterdir())
    exists = runner.invoke(cli, ["tune", str(exported("lenet5")), "-o", str(two_routes)])
    assert exists.exit_code == 1 and "exists; pass --force" in exists.output
    assert sorted(p.name for p in two_routes.iterdir()) == before
    small = runner.invoke(cli, ["tune", str(exported("lenet5")), "-o", str(tmp_path / "d"), "--time-budget", "5"])
    assert small.exit_code == 1 and f"at least {minimum_budget(4):g} s" in small.output
    assert not (tmp_path / "d").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("not a deployment")
    refused = runner.invoke(cli, ["tune", str(exported("lenet5")), "-o", str(other), "--force"])
    assert refused.exit_code == 1 and "not a deployment" in refused.output and (other / "keep.txt").is_file()
    unknown = runner.invoke(cli, ["tune", str(exported("lenet5")), "-o", str(tmp_path / "d"), "--recipes", "int4"])
    assert unknown.exit_code == 2 and "unknown recipe int4" in unknown.output


def test_budget_nobody_meets_keeps_fp32_and_exits_3(exported, tmp_path, digits):
    import onnx

    source = onnx.load(str(exported("mlp")), load_external_data=False)
    spec = Model(exported("mlp")).inputs
    val = digits_samples(spec, read_preprocessing(source), "val", "--eval-data")
    data = tmp_path / "unlabelled.npz"
    np.savez(data, **{k: v for k, v in val.feeds.items()})  # no labels: the budget is an output error
    out = tmp_path / "deploy"
    args = [
        "tune",
        str(exported("mlp")),
        "-o",
        str(out),
        "--batch",
        "1",
        "--threads",
        "1",
        "--providers",
        "cpu",
        "--recipes",
        "dynamic",
        "--eval-data",
        str(data),
        "--max-output-error",
        "0",
        "--time-budget",
        "25",
        "--json",
    ]
    outcome = CliRunner().invoke(cli, args)
    assert outcome.exit_code == 3, outcome.output  # the work was done and a check did not pass
    record = load_deployment(out)
    assert [n for n, _ in record.files] == ["model.onnx"]
    assert record.profiles[0].routes[0].choice == REFERENCE
    assert record.candidate("dynamic@cpu").output_error > 0 and not record.candidate("dynamic@cpu").within_budget
    assert record.budget["labelled"] is False and "held-out half" in record.budget["report"]
    assert any("no recipe" in n for n in record.notes)


def test_interrupted_write_leaves_the_old_folder(two_routes, tmp_path, monkeypatch):
    folder = copy_of(two_routes, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    deployment = load_deployment(folder)

    class File:
        def __init__(self, name):
            self.file, self.path = name, folder / name

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune_module.shutil, "copyfile", killed)
    with pytest.raises(KeyboardInterrupt):
        tune_module._write(folder, deployment, [File(n) for n, _ in deployment.files])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no staging folder left behind


def test_the_tune_report_profiles_its_choice_per_node(tuned):
    _, result = tuned("lenet5")
    routes = result.deployment.profiles[0].routes
    assert [p.model for p in result.node_profiles] == [r.choice for r in routes]
    for profile, route in zip(result.node_profiles, routes):
        assert profile.batch == max(route.measured_at) and profile.nodes
        assert profile.threads == result.deployment.profiles[0].threads
    assert "profile: " in render_tune(result) and result.to_dict()["node_profiles"][0]["nodes"]

