import pytest
import torch

import quanto  # noqa: F401  (loads the native library)

FLOAT_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SHAPES = [(1, 1), (3, 33), (16, 64), (32, 257), (4, 6, 32)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(20261122)


def random_tensor(shape, dtype, scale=3.0):
    return (torch.randn(shape, dtype=torch.float32) * scale).to(dtype)


def assert_bitwise_equal(got, want):
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if got.dtype.is_floating_point and got.element_size() == 1:
        got, want = got.view(torch.uint8), want.view(torch.uint8)
    elif got.dtype.is_floating_point:
        # Compare bits so -0.0 vs 0.0 and NaN payloads count.
        view = {2: torch.int16, 4: torch.int32, 8: torch.int64}[got.element_size()]
        got, want = got.view(view), want.view(view)
    mismatch = (got != want).nonzero()
    assert mismatch.numel() == 0, f"{mismatch.shape[0]} of {got.numel()} differ, first at {mismatch[0].tolist()}"
