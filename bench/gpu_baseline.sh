#!/usr/bin/env bash
# The datacenter baseline on an NVIDIA GPU machine: one model through ONNX Runtime's CUDA (and
# TensorRT, where the build has it) execution providers, with NVML power, as `--role datacenter`
# results; and the same model on this machine's CPU first, the bare baseline the GPU figures are
# printed against.
#
#   bench/gpu_baseline.sh MODEL.onnx [HARDWARE_KEY] [RESULTS_DIR]
#
# HARDWARE_KEY is the catalogue key (default nvidia-h100); RESULTS_DIR (default
# ./gpu-baseline-results) receives one JSON result per provider, for
# `edgemeter results import RESULTS_DIR --db URL` (or publish them with --publish instead).
# BATCH (default 1) sets --batch for models whose batch dimension is free.
# Needs edgemeter with the `gpu` extra (onnxruntime-gpu and nvidia-ml-py) on PATH or in $EDGEMETER.
# A provider that does not start is an error (onnxruntime would otherwise run on the CPU).
set -euo pipefail

model=${1:?usage: bench/gpu_baseline.sh MODEL.onnx [HARDWARE_KEY] [RESULTS_DIR]}
hardware=${2:-nvidia-h100}
results=${3:-gpu-baseline-results}
edgemeter=${EDGEMETER:-edgemeter}
python=$(dirname "$(command -v "$edgemeter")")/python
command -v nvidia-smi >/dev/null 2>&1 || { echo "gpu_baseline: no nvidia-smi: not an NVIDIA GPU machine" >&2; exit 2; }
mkdir -p "$results"
common=(--role datacenter --hardware "$hardware" --scenario offline --duration-s 30 --batch "${BATCH:-1}" -q)

throughput() { "$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_sps"])' "$1"; }

cpu=$results/cpu.json
"$edgemeter" bench "$model" "${common[@]}" --providers CPUExecutionProvider --power none --json "$cpu"
cpu_sps=$(throughput "$cpu")
echo "CPUExecutionProvider: $cpu_sps samples/s (the bare baseline)"

available=$("$python" -c 'import onnxruntime as o; print(" ".join(o.get_available_providers()))')
for provider in CUDAExecutionProvider TensorrtExecutionProvider; do
  case " $available " in
    *" $provider "*) ;;
    *) echo "$provider: not in this onnxruntime build (the 'gpu' extra has it): skipped"; continue ;;
  esac
  out=$results/$provider.json
  "$edgemeter" bench "$model" "${common[@]}" --providers "$provider,CPUExecutionProvider" --power nvml --json "$out"
  sps=$(throughput "$out")
  "$python" -c 'import sys; g, c = map(float, sys.argv[1:3]); print(f"{sys.argv[3]}: {g:.1f} samples/s, {g / c:.2f}x the CPU")' \
    "$sps" "$cpu_sps" "$provider"
done
echo "results in $results: edgemeter results import $results --db URL"
