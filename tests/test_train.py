import json
import os
import pickle

import pytest

from edgenn import zoo
from edgenn.checkpoint import load_weights, save_weights
from edgenn.errors import EdgennError, ModelFileError
from edgenn.train import TrainConfig, train

# Reduced epochs per family; floors far above chance (10%) but below what these runs reach.
SHORT_RUNS = {
    "mlp": (30, 0.85),
    "lenet5": (10, 0.90),
    "simple_cnn": (4, 0.90),
    "resnet": (6, 0.85),
    "lstm": (30, 0.85),
    "gru": (30, 0.85),
    "activations": (30, 0.80),
}


@pytest.mark.parametrize("name", SHORT_RUNS)
def test_short_training_beats_floor(name, tmp_path, digits):
    epochs, floor = SHORT_RUNS[name]
    result = train(TrainConfig.for_model(name, epochs=epochs), tmp_path, data=digits)
    assert result.test_accuracy >= floor
    record = json.loads(result.record_path.read_text())
    assert record["test_accuracy"] == result.test_accuracy
    assert record["config"]["epochs"] == epochs
    assert {"torch", "numpy", "python"} <= set(record["versions"])
    reloaded = load_weights(zoo.create(name), name, result.weights_path)
    assert set(reloaded.state_dict()) == set(zoo.create(name).state_dict())


def test_same_seed_gives_bitwise_identical_weights(tmp_path, digits):
    runs = [train(TrainConfig.for_model("lenet5", epochs=3, seed=7), tmp_path / str(i), data=digits) for i in (1, 2)]
    assert runs[0].weights_path.read_bytes() == runs[1].weights_path.read_bytes()
    other = train(TrainConfig.for_model("lenet5", epochs=3, seed=8), tmp_path / "3", data=digits)
    assert other.weights_path.read_bytes() != runs[0].weights_path.read_bytes()


@pytest.mark.parametrize(
    "optimizer,loss,init,lr",
    [
        ("sgd", "cross_entropy", "xavier_uniform", 0.1),
        ("rmsprop", "mse", "kaiming_normal", 0.003),
        ("adam", "cross_entropy", "normal", 0.01),
    ],
)
def test_training_options_are_honoured(optimizer, loss, init, lr, tmp_path, digits):
    cfg = TrainConfig.for_model("mlp", epochs=20, optimizer=optimizer, loss=loss, init=init, lr=lr)
    result = train(cfg, tmp_path, data=digits)
    assert json.loads(result.record_path.read_text())["config"]["optimizer"] == optimizer
    assert result.test_accuracy > 0.75


def test_unknown_option_values_are_errors():
    with pytest.raises(EdgennError, match="unknown optimizer 'lbfgs'"):
        TrainConfig.for_model("mlp", optimizer="lbfgs")
    with pytest.raises(EdgennError, match="cannot be trained"):
        TrainConfig.for_model("mlp_tutorial")


def test_unwritable_output_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EdgennError, match="cannot write to output folder"):
        train(TrainConfig.for_model("lenet5", epochs=1), blocker / "out")


@pytest.fixture
def lenet_weights(tmp_path):
    return save_weights(zoo.create("lenet5"), "lenet5", tmp_path / "lenet5.safetensors")


def test_checkpoint_of_another_model_is_refused(lenet_weights):
    with pytest.raises(ModelFileError, match="holds weights for 'lenet5', not 'gru'"):
        load_weights(zoo.create("gru"), "gru", lenet_weights)


def test_truncated_checkpoint_is_refused(lenet_weights):
    data = lenet_weights.read_bytes()
    lenet_weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_weights(zoo.create("lenet5"), "lenet5", lenet_weights)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_checkpoint_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"weights": _Boom()}))
    with pytest.raises(ModelFileError, match="not a readable edgenn checkpoint"):
        load_weights(zoo.create("lenet5"), "lenet5", path)
    assert not (tmp_path / "PWNED").exists()


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(ModelFileError, match="edgenn train lenet5"):
        load_weights(zoo.create("lenet5"), "lenet5", tmp_path / "nope.safetensors")
