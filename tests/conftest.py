from __future__ import annotations

import os

import pytest

# Deterministic and light on a 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def digits():
    from edgenn.data import load_digits_split

    return load_digits_split()
