"""AWQ (optimizer="awq", "awq+hqq", "awq+gptq"): lower int4 output error than round-to-nearest
and than its base optimizer alone on models with outlier activation channels; the fold keeps the
float function; no search and no clipping is exactly min/max; the files are the standard format
(quanto and optimum-quanto 0.2.7 reload them); argument and flow errors."""

import copy

import pytest
import torch
from optimum.quanto import QuantizedModelForCausalLM as OQModelForCausalLM
from outlier_models import llama_groups, mlp_batches, outlier_mlp, relative_error, tiny_llama, token_batches

import quanto
from quanto.awq import apply_awq
from quanto.models import QuantizedModelForCausalLM

TEST_IDS = torch.tensor([[9, 31, 4, 77, 120, 5, 18, 240, 66, 3, 12, 150, 7, 201, 45, 90]])


def quantized(model, optimizer, batches, weights="qint4", group_size=32, **kwargs):
    q = quanto.quantize(copy.deepcopy(model), weights=weights, optimizer=optimizer, group_size=group_size, **kwargs)
    if getattr(q, "_quanto_awq", None) is not None or optimizer in ("gptq", "awq", "awq+hqq", "awq+gptq") \
            or isinstance(optimizer, quanto.AwqOptimizer):
        with torch.no_grad(), quanto.Calibration():
            for b in batches:
                q(b)
    return quanto.freeze(q)


def test_awq_beats_its_base_on_the_outlier_mlp():
    model, batches = outlier_mlp(), mlp_batches()
    test = torch.randn(256, 128, generator=torch.Generator().manual_seed(5))
    err = {name: relative_error(quantized(model, name, batches), model, test)
           for name in ("minmax", "hqq", "gptq", "awq", "awq+hqq", "awq+gptq")}
    print("outlier MLP int4 g32 relative errors:", {k: round(v, 5) for k, v in err.items()})
    # measured: minmax 0.0070, hqq 0.0060, gptq 0.0037, awq 0.0022, awq+hqq 0.0019, awq+gptq 0.0011
    assert err["awq"] < 0.5 * err["minmax"]
    assert err["awq+hqq"] < 0.5 * err["hqq"]
    assert err["awq+gptq"] < 0.7 * err["gptq"]


def test_awq_on_tiny_llama_groups_report_and_files(tmp_path):
    model, batches = tiny_llama(tie=False), token_batches()
    opt = quanto.AwqOptimizer()
    q = quantized(model, opt, batches, exclude="lm_head")
    rtn = quantized(model, "minmax", batches, exclude="lm_head")
    ours, theirs = relative_error(q, model, TEST_IDS), relative_error(rtn, model, TEST_IDS)
    print(f"tiny Llama int4 g32 relative error: min/max {theirs:.5f}, AWQ {ours:.5f}")
    assert ours < 0.7 * theirs
    # One report entry per group, each with its predecessor (v_proj -> o_proj across GQA heads).
    assert {e["predecessor"]: e["layers"] for e in opt.report} == llama_groups()
    assert all(e["error"] <= e["error_unscaled"] for e in opt.report)
    assert any(e["exponent"] is not None for e in opt.report)
    # The standard format: quanto and optimum-quanto reload it.
    wrapped = QuantizedModelForCausalLM(q)
    wrapped.save_pretrained(tmp_path)
    assert all(v == {"weights": "qint4", "activations": "none", "group_size": 32}
               for v in wrapped.quantization_map().values())
    with torch.no_grad():
        want = q(TEST_IDS).logits
        assert torch.equal(QuantizedModelForCausalLM.from_pretrained(tmp_path)(TEST_IDS).logits, want)


def test_optimum_quanto_reads_awq_files(tmp_path):
    """optimum-quanto reads default group sizes only (128 here): the layers' 128/256 inputs."""
    model, batches = tiny_llama(tie=False), token_batches()
    q = QuantizedModelForCausalLM(quantized(model, "awq+gptq", batches, group_size=None, exclude="lm_head"))
    q.save_pretrained(tmp_path)
    o = OQModelForCausalLM.from_pretrained(str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(o(TEST_IDS).logits, q(TEST_IDS).logits, rtol=1e-4, atol=1e-4)


def test_fold_keeps_the_float_function():
    """With clipping off, AWQ's folds change no float output: after the search, the model run with
    float weights (inside Calibration) is the original one."""
    model, batches = tiny_llama(), token_batches()
    q = quanto.quantize(copy.deepcopy(model), weights="qint4", optimizer=quanto.AwqOptimizer(clip=False),
                        group_size=32, exclude="lm_head")
    with torch.no_grad(), quanto.Calibration():
        for b in batches:
            q(b)
    report = apply_awq(q)
    assert sum(e["exponent"] is not None for e in report) >= 4  # some factors were folded
    with torch.no_grad(), quanto.Calibration():
        got = q(TEST_IDS).logits
    want = model(TEST_IDS).logits
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_no_search_no_clip_is_minmax_bit_for_bit():
    model, batches = tiny_llama(), token_batches()
    a = quantized(model, quanto.AwqOptimizer(grid=0, clip=False), batches, exclude="lm_head")
    b = quantized(model, "minmax", batches, exclude="lm_head")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_awq_int2_and_bfloat16():
    model, batches = outlier_mlp().to(torch.bfloat16), [b.to(torch.bfloat16) for b in mlp_batches()]
    test = torch.randn(64, 128, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    for weights in ("qint4", "qint2"):
        err_awq = relative_error(quantized(model, "awq", batches, weights=weights), model, test)
        err_rtn = relative_error(quantized(model, "minmax", batches, weights=weights), model, test)
        assert err_awq < err_rtn, (weights, err_awq, err_rtn)


def test_awq_errors():
    model = outlier_mlp()
    with pytest.raises(ValueError, match="2/4-bit"):
        quanto.quantize(copy.deepcopy(model), weights="qint8", optimizer="awq")
    with pytest.raises(ValueError, match="static activations"):
        quanto.quantize(copy.deepcopy(model), weights="qint4", activations="qint8", optimizer="awq")
    with pytest.raises(ValueError, match="unknown optimizer 'awq\\+foo'.*awq\\+gptq"):
        quanto.quantize(copy.deepcopy(model), weights="qint4", optimizer="awq+foo")
    with pytest.raises(ValueError, match="unknown base optimizer"):
        quanto.AwqOptimizer(base="absmax")
    with pytest.raises(TypeError, match="base must be"):
        quanto.AwqOptimizer(base=quanto.AbsmaxOptimizer())
    for kwargs in ({"grid": -1}, {"grid": 2.5}, {"clip_grid": True}, {"max_shrink": 1.0}, {"search_rows": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            quanto.AwqOptimizer(**kwargs)
    q = quanto.quantize(copy.deepcopy(model), weights="qint4", optimizer="awq")
    with pytest.raises(ValueError, match="needs calibration data"):
        quanto.freeze(q)
    with torch.no_grad(), quanto.Calibration():
        q(mlp_batches()[0])
    with pytest.raises(ValueError, match=r"call quanto.freeze\(model\)"):
        q.fc1.freeze()
    quanto.freeze(q)  # the model-level call works, once calibrated
    assert q.fc1.frozen and q.fc2.frozen and not q._forward_pre_hooks and not q.fc1._forward_pre_hooks
    # Calibrating through a submodule: no fold can be checked on the model, so no factor (clipping only).
    outer = quanto.quantize(torch.nn.Sequential(outlier_mlp()), weights="qint4", optimizer="awq")
    with torch.no_grad(), quanto.Calibration():
        outer[0](mlp_batches()[0])
    with pytest.warns(UserWarning, match="only clipped, not scaled"):
        quanto.freeze(outer)
    assert outer[0].fc1.optimizer.report[0]["exponent"] is None


def test_awq_with_dynamic_activations():
    # Per-token scales are computed at run time, so folding AWQ's factors upstream stays valid (W4A8).
    model, batches, test = outlier_mlp(), mlp_batches(), mlp_batches(seed=7)[0]
    errors = {}
    for opt in ("awq", "minmax"):
        q = quanto.quantize(copy.deepcopy(model), weights="qint4", activations="qint8", dynamic_activations=True,
                            optimizer=opt)
        with torch.no_grad(), quanto.Calibration():
            for b in batches:
                q(b)
        quanto.freeze(q)
        assert q.fc1.activation_qtype is not None and q.fc1.frozen
        errors[opt] = relative_error(q, model, test)
    assert errors["awq"] < errors["minmax"], errors
