import pytest
import torch

from edgenn import zoo
from edgenn.errors import EdgennError
from edgenn.summary import summarize

SPEC_MODELS = ["mlp", "mlp_tutorial", "lenet5", "simple_cnn", "resnet", "lstm", "gru", "activations"]


def test_registry_lists_every_spec_model_once():
    assert zoo.names() == SPEC_MODELS


def test_unknown_model_error_lists_valid_names():
    with pytest.raises(EdgennError) as err:
        zoo.create("lenet")
    assert "unknown model 'lenet'" in str(err.value)
    for name in SPEC_MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", SPEC_MODELS)
@pytest.mark.parametrize("batch", [1, 7])
def test_forward_shape(name, batch):
    spec = zoo.entry(name)
    model = zoo.create(name).eval()
    x = torch.rand(spec.inputs[0].concrete_shape(batch, sequence=8))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (batch, len(spec.labels))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_models_take_any_sequence_length(name):
    model = zoo.create(name).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 5, 8)).shape == (3, 10)
        assert model(torch.rand(3, 12, 8)).shape == (3, 10)


def test_softmax_output_sums_to_one_and_logits_do_not():
    model = zoo.create("activations").eval()
    x = torch.rand(4, 64)
    with torch.no_grad():
        probs, logits = model(x), model.logits(x)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))
    torch.testing.assert_close(torch.softmax(logits, -1), probs)


def test_activation_zoo_has_every_activation_of_the_spec():
    kinds = [type(m).__name__ for m in zoo.create("activations").modules()]
    for kind in ["Sigmoid", "Tanh", "ReLU", "LeakyReLU", "PReLU", "ELU", "SELU"]:
        assert kind in kinds


def test_tutorial_mlp_summary_matches_the_tutorial():
    summary = summarize(zoo.create("mlp_tutorial"), zoo.entry("mlp_tutorial").inputs, batch_size=5)
    linear = [r for r in summary.layers if r.kind == "Linear"]
    assert [r.parameters for r in linear] == [12, 8, 6]
    assert [r.output_shape for r in linear] == [(5, 3), (5, 2), (5, 2)]
    assert summary.total_parameters == 26


def test_resnet_has_projection_shortcuts_only_where_shape_changes():
    model = zoo.create("resnet")
    assert isinstance(model.layer1.shortcut, torch.nn.Identity)
    assert isinstance(model.layer2.shortcut, torch.nn.Sequential)
    assert isinstance(model.layer3.shortcut, torch.nn.Sequential)
