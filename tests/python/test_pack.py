"""pack_codes / unpack_codes: optimum-quanto's byte layout, bit for bit."""

import pytest
import reference as ref
import torch
from conftest import assert_bitwise_equal
from optimum.quanto.tensor.packed import pack_weights

ops = torch.ops.quanto


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("shape", [(1,), (5,), (1, 1), (3, 7), (8, 128), (33, 64), (257, 3), (6, 4, 5)])
def test_pack_matches_optimum_quanto_and_round_trips(bits, shape):
    codes = torch.randint(0, 2**bits, shape, dtype=torch.uint8)
    packed = ops.pack_codes(codes, bits)
    assert_bitwise_equal(packed, pack_weights(codes, bits))
    assert_bitwise_equal(packed, ref.pack(codes, bits))
    unpacked = ops.unpack_codes(packed, bits, shape[0])
    assert_bitwise_equal(unpacked, codes)
    # optimum-quanto's unpack returns every slice; the caller truncates to the original rows.
    assert_bitwise_equal(unpacked, torch.ops.quanto.unpack(packed, bits)[: shape[0]])


def test_pack_rejects_codes_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit in 4 bits"):
        ops.pack_codes(torch.tensor([[3], [16]], dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="bits must be 2 or 4, got 3"):
        ops.pack_codes(torch.zeros(4, 4, dtype=torch.uint8), 3)
    with pytest.raises(TypeError, match="codes must be Byte"):
        ops.pack_codes(torch.zeros(4, 4, dtype=torch.int8), 4)


def test_unpack_checks_the_row_count():
    packed = ops.pack_codes(torch.zeros(5, 4, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="7 rows of 4-bit codes pack into 4 rows, but packed has 3"):
        ops.unpack_codes(packed, 4, 7)
