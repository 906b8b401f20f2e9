import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgenn.preprocess import digits_to_input, picture_to_digit, resize
from edgenn.specs import Preprocessing


@pytest.mark.parametrize("size", [(28, 28), (32, 32)])
def test_numpy_resize_matches_torch_bilinear(size):
    images = np.random.default_rng(0).random((5, 8, 8), dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(images)[:, None], size=size, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(resize(images, size), expected[:, 0].numpy(), atol=1e-6)


def test_layouts(digits):
    images = digits.test.images[:3]
    assert digits_to_input(images, Preprocessing("flat")).shape == (3, 64)
    assert digits_to_input(images, Preprocessing("sequence")).shape == (3, 8, 8)
    assert digits_to_input(images, Preprocessing("image", size=(32, 32))).shape == (3, 1, 32, 32)


def test_picture_of_a_digit_comes_back_as_the_digit(digits):
    digit = digits.test.images[0]
    picture = np.kron(digit, np.ones((8, 8), dtype=np.float32))  # 64x64, bright ink on black
    np.testing.assert_allclose(picture_to_digit(picture, Preprocessing("flat")), digit / digit.max(), atol=1e-6)
    # dark ink on a white page, as drawn by people, is inverted first
    np.testing.assert_allclose(picture_to_digit(1 - picture, Preprocessing("flat")), digit / digit.max(), atol=1e-6)
