#!/usr/bin/env bash
# Creates scripts/reference/.venv with the reference implementations fairlm is checked
# against: Hugging Face transformers (+ torch, CPU) and llama.cpp (llama-cpp-python, built
# from source with native CPU flags). Used by make_fixtures.py and bench/side_by_side.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.15.0 transformers==5.24.0 accelerate==1.15.0 gguf==0.19.0 \
    numpy scipy safetensors tokenizers==0.23.3 sentencepiece==0.2.3 protobuf
CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install -q llama-cpp-python==0.3.36
echo "reference venv ready: $venv"
