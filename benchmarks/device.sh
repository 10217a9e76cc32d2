#!/usr/bin/env bash
# Every GPU measurement the open issues ask for, in one run on a CUDA machine, within
# about 12 minutes of an H100/H200 (issue 10 items 1 and 4, issue 11 items 5 and 8).
# Usage: bash benchmarks/device.sh [OUT]     (OUT: where logs and run folders go; default $OUT or runs/device)
# Assumes the environment of `make test` (.venv) or a python with ouroboros' dependencies.
set -u
out=${1:-${OUT:-runs/device}}
mkdir -p "$out"
py=python; [ -x .venv/bin/python ] && py=.venv/bin/python
export PYTHONPATH=src
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, never stop the script
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T), limit ${limit}s)" | tee -a "$out/summary.txt"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "   exit $? after $SECONDS s total" | tee -a "$out/summary.txt"
  tail -n 25 "$out/$name.log" >>"$out/summary.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/summary.txt" 2>&1
# 1. the same code paths on CUDA as on the CPU (short)
step gpu_check 90 $py benchmarks/gpu_check.py
# 2. issue 10 item 4: U-Net throughput (fp32 / bf16 / bf16 + torch.compile) and one generation at 60,000 images
step gpu_throughput 240 $py benchmarks/gpu.py --full
# 3. issue 10 item 1: the MNIST loop (9 generations, 3 guidance values, 2 seeds) on the GPU, timed;
#    its results.csv has generation 0's recognition and the per-class accuracies for Fig. 2c
step loop_mnist 300 $py benchmarks/demo.py --config configs/loop-mnist.yaml --target 2700 --keep "$out/loop-mnist"
# 4. issue 11 item 8: SD-1.5-sized random pipeline, ouroboros (fp16, SDPA, batch sizing) against the direct call
step text2image 150 $py benchmarks/text2image.py --real-size --n 128 --steps 20 --size 512 --batch-size 8
echo "done in $SECONDS s" | tee -a "$out/summary.txt"
