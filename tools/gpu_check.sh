#!/usr/bin/env bash
# The GPU check in one command: build, test and measure kan-mlip on a GPU machine (no network),
# from the repository root, with the wheels of `make gpu-bundle` carried as .gpu-bundle:
#
#   bash tools/gpu_check.sh                 # results in $OUT (else outputs/gpu-check); --help lists the options
#   bash tools/gpu_check.sh --cpu --quick   # the same steps on the CPU (what `make gpu-dry-run` runs from the bundle)
#
# The steps and their outputs are described in tools/gpu_check.py; this wrapper only finds the machine's
# Python (--python PY, else $KAN_GPU_PYTHON, else python3: the one that has torch) and runs it.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${KAN_GPU_PYTHON:-python3}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --python) py="${args[$((i + 1))]:-}" ;;
    --python=*) py="${args[$i]#--python=}" ;;
  esac
done
if ! command -v "$py" >/dev/null 2>&1; then
  echo "gpu_check: no Python '$py' here; name the machine's Python (the one that has torch) with --python" >&2
  exit 2
fi
export PYTHONUNBUFFERED=1
exec "$py" "$here/gpu_check.py" "$@"
