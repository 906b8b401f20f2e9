"""What apps embed: an exported model run with onnxruntime and numpy alone (no torch).

    from edgenn.runtime import Model

    model = Model("lenet5.onnx")                  # providers="auto": TensorRT, CUDA, OpenVINO, then CPU
    model = Model("lenet5.onnx", providers="openvino", precision="bf16", threads=1)
    model.predict(batch)                          # {"output": array}, inputs checked first
    model.classify_picture("digit.png", top_k=3)  # (ClassScore(label, index, score), ...)
    model.session_info.summary                    # "openvino CPU (...) bf16, 12 of 12 nodes"

This package imports numpy, onnxruntime and edgenn's bottom layer (errors, specs, preprocess)
only; Pillow is imported when a picture file is read, and a provider plugin (OpenVINO) the first
time it is asked for.
"""

from __future__ import annotations

from edgenn.errors import EdgennError, InputError, ModelFileError, ProviderError
from edgenn.runtime.files import FileClassification, classify_array, classify_file
from edgenn.runtime.image import array_to_grey, picture_to_input, read_picture
from edgenn.runtime.model import ClassScore, Model, to_probabilities
from edgenn.runtime.providers import available_providers, resolve_providers, survey
from edgenn.runtime.session import SessionConfig, SessionInfo, open_session

__all__ = [
    "ClassScore",
    "EdgennError",
    "FileClassification",
    "InputError",
    "Model",
    "ModelFileError",
    "ProviderError",
    "SessionConfig",
    "SessionInfo",
    "array_to_grey",
    "available_providers",
    "classify_array",
    "classify_file",
    "open_session",
    "picture_to_input",
    "read_picture",
    "resolve_providers",
    "survey",
    "to_probabilities",
]
