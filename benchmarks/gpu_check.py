"""GPU smoke check: the same code paths on CUDA, compared with the CPU where they should agree.

Run on a machine with a GPU:  PYTHONPATH=src python benchmarks/gpu_check.py
Prints one line per check and a table of timings; exits non-zero if a check fails.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device; nothing to check")
        return 1
    from ouroboros.data.imageset import ImageSet, stratified_split
    from ouroboros.data.loaders import load_digits
    from ouroboros.features.classifier import Classifier, ClassifierConfig
    from ouroboros.generators import DiffusionConfig, DiffusionGenerator, FittedDiffusion
    from ouroboros.metrics import classification_metrics, fid, prdc, precision_recall

    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    failures = []

    def check(name, ok, detail=""):
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}")
        if not ok:
            failures.append(name)

    parts = stratified_split(load_digits(), {"train": 0.7, "test": 0.3}, seed=0)
    train, test = parts["train"], parts["test"]
    t = time.perf_counter()
    clf = Classifier.train(train, ClassifierConfig(device="cuda"), seed=0)
    t_clf = time.perf_counter() - t
    acc_real = classification_metrics(clf.logits(test), test.labels, test.class_names)["accuracy"]
    check("classifier on CUDA", acc_real > 0.95, f"real test accuracy {acc_real:.3f}")

    t = time.perf_counter()
    model = DiffusionGenerator(DiffusionConfig(device="cuda")).fit(train, seed=0)
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    for w, floor in [(0.0, 0.6), (1.0, 0.9)]:
        s = model.sample(1000, guidance=w, seed=1)
        acc = classification_metrics(clf.logits(s), s.labels, s.class_names)["accuracy"]
        check(f"MLP diffusion gen 0 on CUDA, w={w}", acc > floor, f"accuracy {acc:.3f}")
    t_sample = (time.perf_counter() - t) / 2
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        a = FittedDiffusion.load(tmp).sample(64, guidance=1.0, seed=5)
        b = model.sample(64, guidance=1.0, seed=5)
        check("save/load on CUDA reproduces samples", np.array_equal(a.images, b.images))
        cpu = FittedDiffusion.load(tmp, device="cpu").sample(64, guidance=1.0, seed=5)
        check("CUDA weights load on CPU", cpu.images.shape == a.images.shape)

    rng = np.random.default_rng(0)
    cifar_like = ImageSet.create(rng.integers(0, 256, (512, 3, 32, 32), dtype=np.uint8), np.arange(512) % 10,
                                 [str(i) for i in range(10)], "real:random")
    t = time.perf_counter()
    unet = DiffusionGenerator(DiffusionConfig(denoiser="unet", hidden=64, depth=3, train_steps=200, batch_size=64,
                                              device="cuda")).fit(cifar_like, seed=0)
    t_unet = time.perf_counter() - t
    s = unet.sample(100, guidance=1.0, seed=0, sampler="ddim", sample_steps=50)
    check("UNet2DModel 32x32 RGB fit + DDIM sample on CUDA", s.images.shape == (100, 3, 32, 32))

    real = rng.normal(size=(6000, 2048)).astype(np.float32)
    fake = (rng.normal(size=(5000, 2048)) * 1.1).astype(np.float32)
    t = time.perf_counter()
    gpu = prdc(real, fake, device="cuda")
    t_prdc_gpu = time.perf_counter() - t
    t = time.perf_counter()
    cpu_res = prdc(real, fake, device="cpu")
    t_prdc_cpu = time.perf_counter() - t
    check("PRDC on CUDA (float64) equals CPU (float32 + exact checks)", gpu == cpu_res, f"{gpu}")
    check("precision/recall on CUDA equals CPU",
          precision_recall(real, fake, device="cuda") == precision_recall(real, fake, device="cpu"))
    check("FID finite", np.isfinite(fid(real[:500], fake[:500])))

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ouroboros", "demo", "--out", tmp, "--quiet",
                               "--set", "loop.generations=3", "--set", "executor.workers=2"],
                              capture_output=True, text=True)
        t_demo = time.perf_counter() - t
        check("demo (3 generations) end to end on CUDA", proc.returncode == 0, proc.stderr[-300:])

    print(f"\n{'step':<44}{'seconds':>9}")
    for name, sec in [("classifier (20 epochs)", t_clf), ("MLP diffusion fit (1000 steps)", t_fit),
                      ("sample 1000 (50 DDPM steps)", t_sample), ("UNet 32x32 fit (200 steps)", t_unet),
                      ("PRDC 6000x5000x2048 CUDA", t_prdc_gpu), ("PRDC 6000x5000x2048 CPU (16 cores)", t_prdc_cpu),
                      ("demo, 3 generations x 3 guidance x 2 seeds", t_demo)]:
        print(f"{name:<44}{sec:>9.2f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
