"""llama.cpp itself (llama-cpp-python, built from source) loads quanto's GGUF export of SmolLM2-135M
and greedy decoding gives the same tokens as quanto.

Opt-in: llama-cpp-python compiles llama.cpp from source (a long build), so it is not in
requirements.txt; ``make test-gguf`` installs it and runs this file with QUANTO_TEST_LLAMA_CPP=1.
SmolLM2's float weights are the Q4_1 values of its packaged GGUF, so quanto's int4 min/max with
groups of 32 reproduces them and the exported Q4_1 blocks are exact (the report says so).
"""

import os

import numpy as np
import pytest
import torch

# Only `make test-gguf` runs it (QUANTO_TEST_LLAMA_CPP=1, after installing llama-cpp-python): there a
# missing llama_cpp is a failure; elsewhere (make test) the file is skipped, installed or not.
if not os.environ.get("QUANTO_TEST_LLAMA_CPP"):
    pytest.skip("llama.cpp check: opt-in, run by `make test-gguf` (QUANTO_TEST_LLAMA_CPP=1)", allow_module_level=True)
import llama_cpp  # noqa: E402

from quanto.export import export  # noqa: E402
from quanto.models import QuantizedModelForCausalLM, load_smollm2, smollm2_gguf  # noqa: E402

PROMPTS = ["Once upon a time", "The Declaration of Independence was signed in", "The capital of France is",
           "def fibonacci(n):"]
NEW_TOKENS = 24
# llama.cpp's CPU dot products quantize activations to 8 bits (Q8_1 blocks against Q4_1 weights), so its
# logits differ from a float computation (by up to ~1.2 on SmolLM2, as much with llama.cpp's own
# conversion of the same weights). Where quanto's logits for two tokens are this close, either may win.
NEAR_TIE = 0.5


def llama_cpp_greedy(llm, prompt_ids, n):
    """Greedy decoding in llama.cpp, one token at a time (argmax of the last logits)."""
    llm.reset()
    llm.eval(list(prompt_ids))
    out = []
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out


def test_llama_cpp_greedy_tokens_equal_quanto_on_smollm2(tmp_path):
    model, tokenizer = load_smollm2(torch.float32)
    QuantizedModelForCausalLM.quantize(model, weights="qint4", group_size=32).save_pretrained(tmp_path / "q")
    tokenizer.save_pretrained(tmp_path / "q")
    del model
    report = export(tmp_path / "q", tmp_path / "smollm2.gguf", format="gguf", tokenizer_pre="smollm")
    assert report.exact, report.summary()

    qmodel = QuantizedModelForCausalLM.from_pretrained(tmp_path / "q").model
    ours = llama_cpp.Llama(model_path=str(tmp_path / "smollm2.gguf"), n_ctx=256, n_threads=2, logits_all=True,
                           verbose=False)
    # The same weights as converted by llama.cpp's own tooling (the package's Q4_1 file).
    folder, name = smollm2_gguf()
    theirs = llama_cpp.Llama(model_path=f"{folder}/{name}", n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    full = 0
    for prompt in PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        assert ours.tokenize(prompt.encode(), add_bos=False, special=False) == ids  # llama.cpp's tokenizer agrees
        with torch.no_grad():
            want = qmodel.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)[0].tolist()
            quanto_logits = qmodel(torch.tensor([want])).logits[0, len(ids) - 1:-1].numpy()
        want = want[len(ids):]
        got = llama_cpp_greedy(ours, ids, NEW_TOKENS)
        assert got == llama_cpp_greedy(theirs, ids, NEW_TOKENS), prompt
        # Teacher-forced on quanto's tokens, llama.cpp picks another token only where quanto's own logits
        # put the two within NEAR_TIE of each other.
        ours.reset()
        ours.eval(ids + want)
        logits = np.array(ours.scores[len(ids) - 1:len(ids) - 1 + NEW_TOKENS])
        picks = logits.argmax(axis=1)
        gaps = [float(quanto_logits[i, w] - quanto_logits[i, p]) for i, (w, p) in enumerate(zip(want, picks)) if w != p]
        same = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), NEW_TOKENS)
        print(f"{prompt!r}: greedy {same}/{NEW_TOKENS} tokens equal; teacher-forced max |logit diff| "
              f"{np.abs(logits - quanto_logits).max():.3g}, other picks at quanto gaps {[round(g, 3) for g in gaps]}: "
              f"quanto {tokenizer.decode(want)!r}, llama.cpp {tokenizer.decode(got)!r}")
        assert all(g < NEAR_TIE for g in gaps), prompt
        full += same == NEW_TOKENS
    assert full >= 2
