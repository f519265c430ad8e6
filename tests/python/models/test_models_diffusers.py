"""quanto.models' diffusers helpers on tiny random diffusers models (fixed seeds): a Stable
Diffusion-style UNet2DConditionModel and a PixArt DiT quantize close to float, save in diffusers'
layout (single file or shards), reload from empty weights with identical outputs, and move files
both ways with optimum-quanto 0.2.7; a DDIM pipeline runs on a quantized UNet2DModel."""

import json
import os
from functools import lru_cache

import diffusers as d
import pytest
import torch
from optimum.quanto import QuantizedDiffusersModel as OQDiffusersModel
from optimum.quanto import QuantizedPixArtTransformer2DModel as OQPixArtTransformer2DModel
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from quanto import qtypes
from quanto.models import (QuantizedDiffusersModel, QuantizedFluxTransformer2DModel,
                           QuantizedPixArtTransformer2DModel, QuantizedUNet2DConditionModel)
from quanto.nn import QModuleMixin

WEIGHTS = ["qint8", "qint4", "qfloat8"]
FILES = ["config.json", "diffusion_pytorch_model.safetensors", "quanto_qmap.json"]

# Relative L2 error ||q - f|| / ||f|| of the model output. Each layer's weights are rounded to
# the qtype's grid — int8 per output channel (~0.4% of a weight's range), float8 e4m3 (3 mantissa
# bits, ~3%), int4 min/max per channel or group (15 steps, ~7%) — and an untrained random network
# does not damp the errors it passes on through its quantized layers (UNet 83, PixArt 27), ten
# deep or more. Measured on these seeds (UNet / PixArt): int8 0.014 / 0.005, float8 0.083 / 0.032,
# int4 0.21 / 0.069; each bound is at least 1.6x the larger figure.
REL_ERROR = {"qint8": 0.03, "qfloat8": 0.15, "qint4": 0.35}


class OQUNet2DConditionModel(OQDiffusersModel):
    # optimum-quanto 0.2.7 ships a PixArt helper only; its base class needs a base_class to load.
    base_class = d.UNet2DConditionModel


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return d.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16).eval()


def tiny_pixart(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = d.PixArtTransformer2DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=2, in_channels=4,
        out_channels=8, cross_attention_dim=16, caption_channels=32, attention_bias=True,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False).eval()
    return model if dtype == torch.float32 else model.to(dtype)


_g = torch.Generator().manual_seed(1)
LATENTS = torch.randn(2, 4, 8, 8, generator=_g)
TEXT = torch.randn(2, 5, 32, generator=_g)      # UNet cross-attention states
CAPTION = torch.randn(2, 6, 32, generator=_g)   # PixArt caption embeddings (projected to 16)
TIMESTEPS = torch.tensor([10, 500])


def run_unet(m):
    with torch.no_grad():
        return m(LATENTS, TIMESTEPS, encoder_hidden_states=TEXT).sample


def run_pixart(m, dtype=torch.float32):
    with torch.no_grad():
        return m(LATENTS.to(dtype), encoder_hidden_states=CAPTION.to(dtype), timestep=TIMESTEPS,
                 added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample


# name: (float model, forward, quanto helper, optimum-quanto helper)
MODELS = {
    "unet": (tiny_unet, run_unet, QuantizedUNet2DConditionModel, OQUNet2DConditionModel),
    "pixart": (tiny_pixart, run_pixart, QuantizedPixArtTransformer2DModel, OQPixArtTransformer2DModel),
}


@lru_cache(maxsize=None)
def float_output(name):
    make, run, _, _ = MODELS[name]
    return run(make())


def quantizable(model):
    return {n for n, m in model.named_modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)}


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("name", MODELS)
def test_quantize_close_to_float(name, weights):
    make, run, helper, _ = MODELS[name]
    model = make()
    names = quantizable(model)
    q = helper.quantize(model, weights=weights)
    assert q.model is model  # in place
    assert all(m.frozen for m in model.modules() if isinstance(m, QModuleMixin))
    assert q.quantization_map() == {n: {"weights": qtypes[weights].name, "activations": "none"} for n in names}
    f, y = float_output(name), run(q)
    rel = ((y - f).norm() / f.norm()).item()
    assert 1e-4 < rel < REL_ERROR[weights], f"{name} {weights}: relative error {rel:.4f}"


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("name", MODELS)
def test_save_layout_and_reload(name, weights, tmp_path):
    make, run, helper, _ = MODELS[name]
    q = helper.quantize(make(), weights=weights)
    y = run(q)
    q.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == FILES
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == helper.base_class.__name__ and config["_diffusers_version"] == d.__version__
    assert json.loads((tmp_path / "quanto_qmap.json").read_text()) == q.quantization_map()
    assert set(load_file(tmp_path / "diffusion_pytorch_model.safetensors")) == set(q.model.state_dict())
    for loader in (helper, QuantizedDiffusersModel):  # the base class reads _class_name
        r = loader.from_pretrained(tmp_path)
        assert type(r) is loader and type(r.model) is helper.base_class
        assert r.quantization_map() == q.quantization_map()
        assert torch.equal(run(r), y)


def test_wrapper_forwards_to_the_model():
    q = QuantizedUNet2DConditionModel.quantize(tiny_unet(), weights="qint8", exclude=["conv_in", "conv_out"])
    assert "conv_in" not in q.quantization_map() and "conv_out" not in q.quantization_map()
    assert q.config.cross_attention_dim == 32 and q.dtype == torch.float32 and q.device.type == "cpu"
    assert q.to("cpu") is q and q.eval() is q
    assert torch.equal(q.forward(LATENTS, TIMESTEPS, encoder_hidden_states=TEXT).sample, run_unet(q))
    assert repr(q).startswith("QuantizedUNet2DConditionModel(UNet2DConditionModel(")


def test_sharded_save_and_stale_files(tmp_path):
    q = QuantizedUNet2DConditionModel.quantize(tiny_unet(), weights="qint8")
    y = run_unet(q)
    q.save_pretrained(tmp_path, max_shard_size="200KB")
    index = json.loads((tmp_path / "diffusion_pytorch_model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    n = len(shards)
    assert n > 2 and shards == [f"diffusion_pytorch_model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert not (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    assert set(index["weight_map"]) == set(q.model.state_dict())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in q.model.state_dict().values())
    assert torch.equal(run_unet(QuantizedUNet2DConditionModel.from_pretrained(tmp_path)), y)
    # optimum-quanto reads diffusers' sharded layout too.
    torch.testing.assert_close(run_unet(OQUNet2DConditionModel.from_pretrained(str(tmp_path))), y,
                               rtol=1e-4, atol=1e-4)
    # Saving again unsharded replaces the shards and the index.
    q.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == FILES
    assert torch.equal(run_unet(QuantizedUNet2DConditionModel.from_pretrained(tmp_path)), y)


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("name", MODELS)
def test_files_move_both_ways_with_optimum_quanto(name, weights, tmp_path):
    """Same float model quantized by each: the saved tensors are the same bytes under the same
    keys, and each library loads the other's folder with its outputs (kernels differ in float
    rounding only: 1e-4)."""
    make, run, helper, oq_helper = MODELS[name]
    q = helper.quantize(make(), weights=weights)
    o = oq_helper.quantize(make(), weights=weights)
    q.save_pretrained(tmp_path / "quanto")
    o.save_pretrained(str(tmp_path / "optimum"))
    ours = load_file(tmp_path / "quanto" / "diffusion_pytorch_model.safetensors")
    theirs = load_file(tmp_path / "optimum" / "diffusion_pytorch_model.safetensors")
    assert set(ours) == set(theirs)
    different = [k for k in ours if ours[k].dtype != theirs[k].dtype or
                 not torch.equal(ours[k].reshape(-1).view(torch.uint8), theirs[k].reshape(-1).view(torch.uint8))]
    assert not different, different[:5]
    assert json.loads((tmp_path / "optimum" / "quanto_qmap.json").read_text()) == q.quantization_map()

    y, yo = run(q), run(o)
    torch.testing.assert_close(run(oq_helper.from_pretrained(str(tmp_path / "quanto"))), y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(run(helper.from_pretrained(tmp_path / "optimum")), yo, rtol=1e-4, atol=1e-4)


class _Factories(TorchDispatchMode):
    """Records the ops that produce float CPU tensors (by shape) and the quantize ops called."""

    def __init__(self):
        super().__init__()
        self.made, self.quantize_calls = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "quanto" and "quantize" in func.__name__:
            self.quantize_calls += 1
        if isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.is_floating_point():
            self.made.append((func.overloadpacket.__name__, tuple(out.shape)))
        return out


def test_from_pretrained_never_materialises_float_weights(tmp_path):
    """The model is built with empty (meta) weights: no float weight of a quantized layer is
    initialised, written or quantized; the quantized tensors are loaded as they are."""
    model = tiny_unet()
    shapes = {tuple(m.weight.shape) for n, m in model.named_modules() if n in quantizable(model)}
    q = QuantizedUNet2DConditionModel.quantize(model, weights="qint4")
    q.save_pretrained(tmp_path)
    with _Factories() as seen:
        r = QuantizedUNet2DConditionModel.from_pretrained(tmp_path)
    written = [(op, s) for op, s in seen.made if s in shapes and op not in ("empty", "empty_strided")]
    assert not written, f"float weights of quantized layers were materialised: {written[:5]}"
    assert seen.quantize_calls == 0
    assert all(not t.is_meta for t in list(r.model.parameters()) + list(r.model.buffers()))
    assert torch.equal(run_unet(r), run_unet(q))


def test_bfloat16_model_and_dtype(tmp_path):
    q = QuantizedPixArtTransformer2DModel.quantize(tiny_pixart(dtype=torch.bfloat16), weights="qint8")
    y = run_pixart(q, torch.bfloat16)
    assert y.dtype == torch.bfloat16
    q.save_pretrained(tmp_path)
    r = QuantizedPixArtTransformer2DModel.from_pretrained(tmp_path)
    # The positional embedding is a buffer computed at construction: it takes the file's dtype.
    assert r.model.pos_embed.pos_embed.dtype == torch.bfloat16
    assert torch.equal(run_pixart(r, torch.bfloat16), y)
    f32 = QuantizedPixArtTransformer2DModel.from_pretrained(tmp_path, dtype=torch.float32)
    assert f32.model.pos_embed.pos_embed.dtype == torch.float32
    torch.testing.assert_close(run_pixart(f32), y.float(), rtol=0.05, atol=0.05)


def test_flux_transformer(tmp_path):
    torch.manual_seed(0)
    model = d.FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                     attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                     pooled_projection_dim=32, guidance_embeds=False, axes_dims_rope=(4, 6, 6)).eval()
    g = torch.Generator().manual_seed(2)
    img_ids = torch.stack([torch.zeros(16), torch.arange(16) // 4, torch.arange(16) % 4], dim=1)
    inputs = dict(hidden_states=torch.randn(2, 16, 16, generator=g),
                  encoder_hidden_states=torch.randn(2, 5, 32, generator=g),
                  pooled_projections=torch.randn(2, 32, generator=g), timestep=torch.tensor([0.3, 0.7]),
                  img_ids=img_ids, txt_ids=torch.zeros(5, 3))

    def run(m):
        with torch.no_grad():
            return m(**inputs).sample

    f = run(model)
    q = QuantizedFluxTransformer2DModel.quantize(model, weights="qint8")
    rel = ((run(q) - f).norm() / f.norm()).item()  # measured 0.0048
    assert 1e-4 < rel < REL_ERROR["qint8"], rel
    q.save_pretrained(tmp_path)
    assert torch.equal(run(QuantizedFluxTransformer2DModel.from_pretrained(tmp_path)), run(q))


def tiny_unet2d():
    torch.manual_seed(0)
    return d.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
                         down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                         up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=16, attention_head_dim=8).eval()


def ddim_images(unet):
    pipe = d.DDIMPipeline(unet=unet, scheduler=d.DDIMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    return torch.from_numpy(pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=4,
                                 eta=0.0, output_type="np").images)


@lru_cache(maxsize=None)
def float_images():
    return ddim_images(tiny_unet2d())


# Mean |quantized - float| of the pipeline's [0, 1] images after 4 DDIM steps. Each step turns the
# UNet's noise estimate into an image estimate scaled by 1/sqrt(alpha_bar) (17, 3.6, 1.4, 1 at
# t = 750, 500, 250, 0; clipped to [-1, 1]), so the UNet's error is amplified before the clipping
# of the saturated pixels of a random UNet bounds it. Measured on these seeds: int8 0.0077, float8
# 0.046, int4 0.11 (PSNR 38, 23, 16 dB); the bounds leave 2x or more.
IMAGE_ERROR = {"qint8": 0.02, "qfloat8": 0.1, "qint4": 0.25}


@pytest.mark.parametrize("weights", WEIGHTS)
def test_ddim_pipeline(weights, tmp_path):
    f = float_images()
    assert f.shape == (2, 16, 16, 3)
    q = QuantizedDiffusersModel.quantize(tiny_unet2d(), weights=weights)
    images = ddim_images(q)  # the wrapper stands in for the UNet, as with optimum-quanto
    assert torch.equal(images, ddim_images(q.model))
    err = (images - f).abs().mean().item()
    assert 0 < err < IMAGE_ERROR[weights], f"{weights}: mean image error {err:.4f}"
    if weights == "qint8":
        q.save_pretrained(tmp_path)
        assert torch.equal(ddim_images(QuantizedDiffusersModel.from_pretrained(tmp_path)), images)


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="diffusers model"):
        QuantizedDiffusersModel.quantize(torch.nn.Linear(4, 4), weights="qint8")
    with pytest.raises(TypeError, match="UNet2DConditionModel, got PixArtTransformer2DModel"):
        QuantizedUNet2DConditionModel.quantize(tiny_pixart(), weights="qint8")
    with pytest.raises(ValueError, match="no quantized module"):
        QuantizedPixArtTransformer2DModel(tiny_pixart())
    with pytest.raises(ValueError, match="no module"):
        QuantizedPixArtTransformer2DModel.quantize(tiny_pixart(), weights="qint8", include="nothing.matches")
    with pytest.raises(ValueError, match="qint3"):
        QuantizedPixArtTransformer2DModel.quantize(tiny_pixart(), weights="qint3")

    with pytest.raises(FileNotFoundError, match="not a folder"):
        QuantizedPixArtTransformer2DModel.from_pretrained(tmp_path / "absent")
    # A float diffusers save: no quantization map.
    tiny_pixart().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no quanto_qmap.json"):
        QuantizedPixArtTransformer2DModel.from_pretrained(tmp_path)
    q = QuantizedPixArtTransformer2DModel.quantize(tiny_pixart(), weights="qint8")
    q.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="meta"):
        QuantizedPixArtTransformer2DModel.from_pretrained(tmp_path, device="meta")
    # A helper for another class names both classes.
    with pytest.raises(ValueError, match="describes a PixArtTransformer2DModel, not a UNet2DConditionModel"):
        QuantizedUNet2DConditionModel.from_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "_class_name": "NoSuchModel"}))
    with pytest.raises(ValueError, match="'NoSuchModel'.*is not a diffusers model class"):
        QuantizedDiffusersModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "_class_name"}))
    with pytest.raises(ValueError, match="_class_name"):
        QuantizedDiffusersModel.from_pretrained(tmp_path)
    os.unlink(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        QuantizedPixArtTransformer2DModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    os.unlink(tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(FileNotFoundError, match="no diffusion_pytorch_model.safetensors"):
        QuantizedPixArtTransformer2DModel.from_pretrained(tmp_path)
