#!/usr/bin/env bash
# llama.cpp's AMX kernels crash (SIGSEGV in ggml_backend_amx_mul_mat) with Gemma 3 on a
# CPU that has AMX (Intel Sapphire Rapids and later; llama-cpp-python 0.3.36, seen
# 2026-12-01): a native build enables them. `make setup` builds llama-cpp-python with
# LLAMA_CMAKE_ARGS (no AMX; REPACK and AVX-512 stay), then runs this script, which
# rebuilds it when the installed library still has AMX (a wheel pip cached earlier).
# Usage: scripts/llama_no_amx.sh PYTHON
set -euo pipefail
py=${1:?usage: scripts/llama_no_amx.sh PYTHON}
has_amx() {
  "$py" -c 'import llama_cpp, sys; sys.exit(0 if b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info() else 1)' 2>/dev/null
}
if ! "$py" -c 'import llama_cpp' 2>/dev/null || ! has_amx; then
  exit 0  # no llama.cpp (the llm extra is not installed), or built without AMX
fi
version=$("$py" -c 'import llama_cpp; print(llama_cpp.__version__)')
echo "setup: llama-cpp-python $version was built with AMX, whose kernels crash here: rebuilding without (~4-7 min)"
"$py" -m pip cache remove llama_cpp_python >/dev/null 2>&1 || true
CMAKE_ARGS="${LLAMA_CMAKE_ARGS:?}" "$py" -m pip install --progress-bar off --force-reinstall --no-deps \
  "llama-cpp-python[server]==$version" | { grep -E --line-buffered '^(Building|Successfully)' || true; }
if has_amx; then
  echo "setup: llama-cpp-python still has AMX after the rebuild" >&2
  exit 1
fi
