"""Benchmark (not a test): phantom generation time and ACDC-layout conversion time per patient.

    python benchmarks/bench_conversion.py --patients 20 --seed 0 [--frames 8] [--n4]

Everything is written to a temporary folder that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--n4", action="store_true", help="also time the conversion with N4 correction")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch  # noqa: F401  (only to pin the thread count of libraries that honour it)

    torch.set_num_threads(1)
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom

    with tempfile.TemporaryDirectory(prefix="glrp-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        meta = make_phantom(root / "acdc", n_patients=args.patients, seed=args.seed, n_frames=args.frames)
        t_phantom = time.perf_counter() - t0
        voxels = sum(p.in_plane_size ** 2 * p.n_slices * p.n_frames for p in meta)
        print(f"phantom: {args.patients} patients x {args.frames} frames ({voxels / 1e6:.1f} M voxels) in "
              f"{t_phantom:.2f} s = {t_phantom / args.patients:.3f} s/patient")
        runs = [("plain", False)] + ([("n4", True)] if args.n4 else [])
        for i, (label, n4) in enumerate(runs):
            t0 = time.perf_counter()
            out = convert_acdc(root / "acdc", 990 + i, seed=args.seed, n4=n4, raw_root=root / "raw")
            t_conv = time.perf_counter() - t0
            n_files = sum(1 for _ in out.rglob("*.nii.gz"))
            print(f"conversion ({label}): {t_conv:.2f} s = {t_conv / args.patients:.3f} s/patient, {n_files} NIfTI files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
