import optimum.quanto as oq
import pytest
import torch

import quanto

NAMES = ["qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2"]


@pytest.mark.parametrize("name", NAMES)
def test_qtype_fields_match_optimum_quanto(name):
    ours, theirs = quanto.qtype_from_name(name), oq.qtypes[name]
    assert (ours.name, ours.bits, ours.is_floating_point, ours.dtype) == (
        theirs.name,
        theirs.bits,
        theirs.is_floating_point,
        theirs.dtype,
    )
    assert ours.qmin == theirs.qmin and ours.qmax == theirs.qmax


def test_qfloat8_is_an_alias():
    assert quanto.qfloat8 is quanto.qfloat8_e4m3fn
    assert quanto.qfloat8.dtype == torch.float8_e4m3fn


def test_unknown_qtype_lists_valid_names():
    with pytest.raises(ValueError, match="valid qtypes: .*qint4"):
        quanto.qtype_from_name("qint3")
    with pytest.raises(ValueError, match="unknown qtype 'qint3'; valid qtypes: qint2, qint4"):
        torch.ops.quanto.qtype_info("qint3")
    with pytest.raises(ValueError, match="absmax_scale: unknown qtype 'int8'"):
        torch.ops.quanto.absmax_scale(torch.ones(2, 2), "int8")


@pytest.mark.parametrize("in_features", [1, 64, 128, 129, 160, 192, 256, 384, 1536, 4096, 11008, 13824, 100, 4095])
def test_default_group_size_follows_the_format_rule(in_features):
    import reference as ref

    assert torch.ops.quanto.default_group_size(in_features) == ref.default_group_size(in_features)


def test_default_group_size_rejects_non_positive():
    with pytest.raises(ValueError, match="in_features must be positive"):
        torch.ops.quanto.default_group_size(0)
