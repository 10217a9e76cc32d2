# The GPU measurements, most important first, in one script of at most ~9.5 minutes on an
# H100-class GPU; each step has its own time limit, so a slow step costs only its own
# figures: the CUDA code paths, MNIST generation 0 at its own settings, U-Net throughput,
# one generation at the paper's scale, and the text-to-image pipeline.
#
# On any machine with an NVIDIA GPU, from the repository root:
#   make .venv/.installed TORCH_INDEX=https://download.pytorch.org/whl/cu128 TORCH=torch==2.13.0+cu128
#   bash benchmarks/device.sh [OUT]          (or with KEEP_TORCH=1 where torch with CUDA is installed)
# A GPU machine without network access: run `bash benchmarks/device_wheels.sh` on one with it,
# copy the repository with its .whl/ folder over, and run `bash benchmarks/device.sh` there:
# it installs what is in .whl/ into /tmp/site first, beside the torch already installed.
#
# OUT (default runs/device) gets few files: summary.txt (every step's whole log), the MNIST
# generation-0 results.csv and sample grid. Run folders go to $WORK (default /tmp/device-runs).
# It uses .venv/bin/python, or python3, as they are.
set -u
out=${1:-${OUT:-runs/device}}
work=${WORK:-/tmp/device-runs}
mkdir -p "$out" "$work"
summary=$out/summary.txt
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python
export PYTHONPATH=src PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=src:/tmp/site
fi
step() {  # step NAME SECONDS COMMAND...: run with a time limit, append its whole log; never stop the script
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T), limit ${limit}s): $*" >>"$summary"
  timeout "$limit" "$@" >>"$summary" 2>&1
  echo "== $name: exit $? at $SECONDS s" >>"$summary"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$summary" 2>&1
step env 30 $py -c "import torch, diffusers, transformers, ouroboros; from ouroboros.data.loaders import load_dataset; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__, \
'transformers', transformers.__version__, 'ouroboros', ouroboros.__version__, 'mnist5k', len(load_dataset('mnist5k')))"
# 1. the same code paths on CUDA as on the CPU
step gpu_check 60 $py benchmarks/gpu_check.py
# 2. generation 0 of configs/loop-mnist-unet.yaml at its own settings, w = 1, one seed:
#    does the real-data classifier recognise >= 95% of its samples (results.csv, per class too)?
step mnist_gen0 130 $py -m ouroboros run configs/loop-mnist-unet.yaml --out "$work/mnist-gen0" \
  --set loop.generations=1 --set 'loop.guidance=[1.0]' --set 'loop.seeds=[0]'
cp "$work/mnist-gen0/results.csv" "$out/mnist-gen0-results.csv" 2>/dev/null
grid=$(ls "$work"/mnist-gen0/samples/*/gen0.png 2>/dev/null | head -1)
[ -n "$grid" ] && cp "$grid" "$out/mnist-gen0-samples.png"
# 3. U-Net throughput, fp32 / bf16 / bf16 + torch.compile (the table is printed after each)
step gpu_throughput 130 $py benchmarks/gpu.py --train-steps 100 --sample 2048
# 4. one generation at the paper's scale (60,000 images, 20 epochs), bf16 + compile
step full_generation 110 $py benchmarks/gpu.py --full-only
# 5. an SD-1.5-sized random pipeline, ouroboros (fp16, SDPA, batch sizing) against the direct call
step text2image 90 $py benchmarks/text2image.py --real-size --n 64 --steps 20 --size 512 --batch-size 8
echo "done in $SECONDS s" >>"$summary"
tail -n 3 "$summary"
