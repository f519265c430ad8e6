# quanto: `make demo` and `make test` each do their own set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := build

VENV   := .venv
PY     := $(VENV)/bin/python
BUILD  := build
SANBUILD := build-sanitize
FUZZBUILD := build-fuzz
FUZZ_SECONDS ?= 30
JOBS   ?= $(shell nproc)
STAMP  := $(VENV)/.setup-stamp

# ccache hits across clones of the repository (CI clones it afresh).
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1
export PYTHONPATH := $(CURDIR)/python$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: setup install build test test-kernels test-ops test-nn test-io test-python test-models test-examples test-cli test-packaging test-sanitize test-fuzz test-gguf demo bench clean

setup: $(STAMP)
$(STAMP): scripts/setup.sh requirements.txt constraints.txt
	bash scripts/setup.sh
	touch $@

# The build is the package's editable install into .venv (pyproject.toml: scikit-build-core runs
# CMake against the venv's torch), pointed at build/ with the tests and benchmarks switched on, so
# one CMake tree serves pip, the C++ tests and the Python package (the library is copied into
# python/quanto/_native). `pip install --no-build-isolation --no-deps .` makes a real wheel install.
build install: $(STAMP)
	CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(PY) -m pip install -q --disable-pip-version-check \
	  --no-build-isolation --no-deps -e . -C build-dir=$(BUILD) \
	  -C cmake.define.QUANTO_BUILD_TESTS=ON -C cmake.define.QUANTO_BUILD_BENCH=ON

test: build test-kernels test-ops test-nn test-io test-python test-models test-examples test-cli test-packaging test-sanitize test-fuzz
	@echo "make test: all suites passed"

test-kernels: build
	$(BUILD)/quanto_kernel_tests --gtest_brief=1

test-ops: build
	$(BUILD)/quanto_ops_tests --gtest_brief=1

# The C++ API: quantized tensors and layers, quantize/Calibration/QAT/freeze, save/requantize;
# again through the device-generic ATen path, and on every other ISA this CPU supports (layouts
# follow the CPU kernel set).
test-nn: build
	$(BUILD)/quanto_nn_tests --gtest_brief=1
	QUANTO_FORCE_GENERIC=1 $(BUILD)/quanto_nn_tests --gtest_brief=1
	for isa in $$($(PY) -c 'import quanto, torch; print(*torch.ops.quanto.supported_cpu_isas()[:-1])'); do \
	  QUANTO_CPU_ISA=$$isa $(BUILD)/quanto_nn_tests --gtest_brief=1 || exit 1; \
	done
	QUANTO_NN_SAVE_FIXTURE=$(BUILD)/quanto_nn_save_fixture $(PY) -m pytest -q tests/nn

# The C++ example on the real all-MiniLM-L6-v2 (fast mode), checked against Python transformers.
test-examples: build
	$(PY) -m pytest -q tests/examples

# Everything once with the best ISA; the API tests again through the device-generic ATen path
# (QUANTO_FORCE_GENERIC=1: what CUDA, MPS, XPU... run); then the dispatch-sensitive tests on
# every other ISA this CPU supports.
test-python: build
	$(PY) -m pytest -q tests/python --ignore=tests/python/models
	QUANTO_FORCE_GENERIC=1 $(PY) -m pytest -q tests/python/api tests/python/test_weight_format.py
	for isa in $$($(PY) -c 'import quanto, torch; print(*torch.ops.quanto.supported_cpu_isas()[:-1])'); do \
	  echo "== QUANTO_CPU_ISA=$$isa"; \
	  QUANTO_CPU_ISA=$$isa $(PY) -m pytest -q tests/python/test_quantize.py tests/python/test_scales.py \
	    tests/python/test_linear.py tests/python/test_weight_format.py tests/python/api/test_api_w4a8.py || exit 1; \
	done

# Real models from packages (all-MiniLM-L6-v2, SmolLM2-135M GGUF) and random transformers configs
# through quanto.models: ~3-4 minutes on 2 cores, most of it SmolLM2 (loaded once).
test-models: build
	$(PY) -m pytest -q tests/python/models

# Packaging: one version (python/quanto/__init__.py) in pip's metadata, CMake and `quanto --version`;
# `cmake --install build --component sdk` (build/packaging-test/prefix), an application outside the
# tree built against it with find_package(quanto) (tests/cmake_consumer), and the installed CLI.
test-packaging: build
	$(PY) -m pytest -q tests/packaging

# The torch-free kernels under AddressSanitizer + UndefinedBehaviorSanitizer (no LibTorch).
test-sanitize: $(STAMP)
	cmake -S . -B $(SANBUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DQUANTO_KERNELS_ONLY=ON \
	  -DQUANTO_SANITIZE=ON -DQUANTO_BUILD_BENCH=OFF
	cmake --build $(SANBUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(SANBUILD)/quanto_kernel_tests --gtest_brief=1
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(SANBUILD)/quanto_io_core_tests --gtest_brief=1

# safetensors + quantization map: torch-free core, ATen layer, two-way interop with Python safetensors.
test-io: build
	$(BUILD)/quanto_io_core_tests --gtest_brief=1
	$(BUILD)/quanto_io_tests --gtest_brief=1

# libFuzzer (clang, ASan/UBSan, torch-free) on the safetensors header and qmap parsers, seeded
# from the hand-made corpora; FUZZ_SECONDS per target. Fails on any crash or sanitizer report.
test-fuzz: $(STAMP)
	cmake -S . -B $(FUZZBUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
	  -DQUANTO_KERNELS_ONLY=ON -DQUANTO_SANITIZE=ON -DQUANTO_BUILD_FUZZERS=ON -DQUANTO_BUILD_BENCH=OFF
	cmake --build $(FUZZBUILD) -j $(JOBS) --target safetensors_fuzz qmap_fuzz
	mkdir -p $(FUZZBUILD)/corpus_safetensors $(FUZZBUILD)/corpus_qmap
	$(FUZZBUILD)/safetensors_fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -dict=tests/fuzz/safetensors.dict \
	  -artifact_prefix=$(FUZZBUILD)/ $(FUZZBUILD)/corpus_safetensors tests/fuzz/corpus_malformed tests/fuzz/corpus_seed
	$(FUZZBUILD)/qmap_fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -dict=tests/fuzz/qmap.dict \
	  -artifact_prefix=$(FUZZBUILD)/ $(FUZZBUILD)/corpus_qmap tests/fuzz/corpus_qmap_malformed tests/fuzz/corpus_seed

# The `quanto` CLI (build/quanto): generated checkpoints, refusals, interrupted runs, peak RSS on a
# ~600 MB checkpoint, the packaged MiniLM, reload in quanto and optimum-quanto (~3-4 minutes).
test-cli: build
	QUANTO_CLI=$(CURDIR)/$(BUILD)/quanto $(PY) -m pytest -q tests/cli

# Per-layer table of the Python API on MiniLM, then the CLI on MiniLM and SmolLM2 (int8, int4-HQQ):
# quantized folders loaded and run against float (size, speed, accuracy).
demo: build
	$(PY) examples/minilm_weight_quantization.py
	QUANTO_CLI=$(CURDIR)/$(BUILD)/quanto $(PY) examples/cli_demo.py

# Opt-in (not in `make test`): llama.cpp itself loads quanto's GGUF export of SmolLM2-135M and decodes
# the same greedy tokens. llama-cpp-python compiles llama.cpp from source (its library only): long, up to an
# hour on a busy 2-core machine.
test-gguf: build
	CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DMTMD_BUILD=OFF" \
	  $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt llama-cpp-python==0.3.36
	QUANTO_TEST_LLAMA_CPP=1 $(PY) -m pytest -q -s tests/python/export/test_export_llama_cpp.py

bench: build
	$(BUILD)/quanto_kernel_bench --benchmark_min_time=0.2
	$(PY) bench/bench_ops.py
	$(PY) bench/bench_linear.py
	$(PY) bench/bench_decode.py
	$(PY) bench/bench_minilm.py
	$(PY) bench/bench_hqq.py

clean:
	rm -rf $(BUILD) $(SANBUILD) $(FUZZBUILD) python/quanto/_native
