"""Benchmark (not a test): dense-CRF seconds per slice, fusion seconds and total post-processing seconds.

    python benchmarks/bench_postprocessing.py [--cases 10] [--slices 10] [--size 256] [--classes 4]
                                              [--iterations 5] [--models 2] [--seed 0]

Synthetic test set on one core: per case, ``--models`` probability maps (softmax of smoothed random
logits, C x slices x size x size) and an image. Prints the CRF time per slice (the target is at most
0.1 s for 256 x 256, 4 classes, 5 iterations), the fusion time and the total post-processing time
(fusion + CRF + largest-component clean-up) for the test set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy starts its thread pool
sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))


def _case(rng, models: int, classes: int, slices: int, size: int):
    import numpy as np
    from scipy import ndimage

    image = ndimage.gaussian_filter(rng.normal(size=(slices, size, size)), (0, 4, 4)) * 400 + 100
    probs = []
    for _ in range(models):
        logits = ndimage.gaussian_filter(rng.normal(size=(classes, slices, size, size)), (0, 0, 6, 6)) * 60
        e = np.exp(logits - logits.max(0))
        probs.append((e / e.sum(0)).astype(np.float32))
    return image.astype(np.float32), probs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np

    from nnunetv2_glrp.postprocessing.crf import PAPER_SETTING, crf_slice, postprocess, scale_intensities
    from nnunetv2_glrp.postprocessing.fusion import fuse_probabilities

    setting = replace(PAPER_SETTING, iterations=args.iterations, largest_component=True)
    spacing = (8.0, 1.5, 1.5)
    rng = np.random.default_rng(args.seed)
    cases = [_case(rng, args.models, args.classes, args.slices, args.size) for _ in range(args.cases)]

    t_crf = 0.0
    for image, probs in cases:
        scaled = scale_intensities(image)
        for z in range(args.slices):
            p = np.ascontiguousarray(probs[0][:, z])
            t0 = time.perf_counter()
            crf_slice(p, scaled[z], spacing[1:], setting)
            t_crf += time.perf_counter() - t0
    n_slices = args.cases * args.slices
    t0 = time.perf_counter()
    fused = [fuse_probabilities(probs, f"case{i}") for i, (_, probs) in enumerate(cases)]
    t_fusion = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, (image, probs) in enumerate(cases):
        postprocess(fuse_probabilities(probs, f"case{i}"), image, spacing, setting)
    t_total = time.perf_counter() - t0
    del fused

    print(f"test set: {args.cases} cases x {args.slices} slices of {args.size} x {args.size}, {args.classes} classes, "
          f"{args.models} models, {args.iterations} mean-field iterations, OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']}")
    print(f"CRF: {t_crf / n_slices:.4f} s per slice ({n_slices} slices; target <= 0.1 s)")
    print(f"fusion (with the input checks): {t_fusion:.3f} s = {t_fusion / args.cases:.4f} s per case")
    print(f"total post-processing (fusion + CRF + largest component): {t_total:.2f} s = "
          f"{t_total / args.cases:.3f} s per case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
