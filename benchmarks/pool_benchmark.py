"""``bench_pretraining.py --pool-patients N ...``: how the slice index, the sampler and the loader grow with the pool.

For each N, in a fresh Python process (so that peak memory is that N's alone): the synthetic pool of the first N
patients (``synthetic_pool.py``: written once under ``--root``, N-patient pools are folders of links into it),
then

* index build time cold (the case-table caches deleted first: every ``.pkl`` and image header is read; the
  files themselves may sit in the OS page cache) and cached (the case tables read from their cache files);
* the index's own arrays (bytes) and, for comparison, the memory a list of per-slice ``SliceRecord`` objects
  (what every worker held before the lean index) takes (RSS growth when ``list(index)`` is built);
* slices/s of the loader (sampling, lazy slice reads from the preprocessed files, two augmented 128 x 128 views
  per slice; no PSM, whose cost does not depend on the pool) in-process and with ``--workers`` augmentation
  processes (nnU-Net's ``NonDetMultiThreadedAugmenter``, forked);
* peak RSS (``ru_maxrss``, before the list-of-records comparison) of the main process and peak RSS (``VmHWM``) and final PSS of each worker: RSS counts
  the pages a forked worker shares with its parent (torch's libraries, the index) in full, PSS shares them out.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _status(pid: int | str, field: str) -> float:
    """A ``/proc/<pid>/status`` (or ``smaps_rollup`` for Pss) field in MiB; nan where unavailable."""
    name = "smaps_rollup" if field == "Pss" else "status"
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text(encoding="utf-8").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _drop_caches(labeled: Path, unlabeled: Path) -> None:
    from nnunetv2_glrp.data.case_table import cache_path

    for folder in (labeled, unlabeled):
        cache_path(folder).unlink(missing_ok=True)


def measure_one(root: Path, n_patients: int, frames: int, batches: int, workers: int, batch_size: int) -> dict:
    """All figures of one pool size (run in its own process)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synthetic_pool import pool_of

    from nnunetv2_glrp.data import PretrainingSliceLoader, build_slice_index, make_augmenter
    from nnunetv2_glrp.pretraining import make_config

    t = time.perf_counter()
    labeled, unlabeled, split = pool_of(root, n_patients, frames)
    out = {"patients": n_patients, "frames": frames, "pool_s": time.perf_counter() - t}
    rss0 = _status("self", "VmRSS")
    _drop_caches(labeled, unlabeled)
    t = time.perf_counter()
    index = build_slice_index(labeled, unlabeled, split)
    out["index_cold_s"] = time.perf_counter() - t
    del index
    t = time.perf_counter()
    index = build_slice_index(labeled, unlabeled, split)
    out["index_cached_s"] = time.perf_counter() - t
    out.update(slices=len(index), cases=len(index.case_names), index_mib=index.nbytes / 2**20,
               index_rss_growth_mib=_status("self", "VmRSS") - rss0)
    config = make_config("GLRP", "cpu", batch_size=batch_size)
    t = time.perf_counter()
    loader = PretrainingSliceLoader(index, batch_size, (128, 128), seed=0, augmentation=config.augmentation)
    out["loader_setup_s"] = time.perf_counter() - t
    loader.generate_train_batch()  # warm-up
    t = time.perf_counter()
    for _ in range(batches):
        loader.generate_train_batch()
    out["loader_slices_per_s"] = batches * batch_size / (time.perf_counter() - t)
    out["main_rss_after_loader_mib"] = _status("self", "VmRSS")
    if workers:
        seeds = [int(s) for s in np.random.SeedSequence(0).generate_state(workers)]
        augmenter = make_augmenter(PretrainingSliceLoader(index, batch_size, (128, 128), seed=0,
                                                          augmentation=config.augmentation), workers, seeds)
        next(augmenter)  # workers started and warm
        t = time.perf_counter()
        for _ in range(batches):
            next(augmenter)
        out["workers_slices_per_s"] = batches * batch_size / (time.perf_counter() - t)
        pids = [p.pid for p in getattr(augmenter, "_processes", [])]
        out["worker_peak_rss_mib"] = max((_status(p, "VmHWM") for p in pids), default=float("nan"))
        out["worker_pss_mib"] = max((_status(p, "Pss") for p in pids), default=float("nan"))
        augmenter._finish()
    out["main_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss = _status("self", "VmRSS")
    records = list(index)  # what a list of per-slice records costs, for comparison
    out["record_list_mib"] = _status("self", "VmRSS") - rss
    del records
    out["workers"] = workers
    return out


def run(root: Path, sizes: list[int], frames: int, batches: int, workers: int, batch_size: int) -> list[dict]:
    """Every size in its own process (``--_pool-one``); prints and returns the rows."""
    rows = []
    for n in sizes:
        cmd = [sys.executable, os.fspath(Path(__file__).resolve().parent / "bench_pretraining.py"), "--root",
               os.fspath(root), "--pool-patients", str(n), "--pool-frames", str(frames), "--iterations", str(batches),
               "--workers", str(workers), "--batch-size", str(batch_size), "--_pool-one"]
        result = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", check=False)
        if result.returncode:
            raise SystemExit(f"pool benchmark for N={n} failed:\n{result.stdout}\n{result.stderr[-4000:]}")
        line = [x for x in result.stdout.splitlines() if x.startswith("POOL_RESULT ")][-1]
        rows.append(json.loads(line[len("POOL_RESULT "):]))
        print(json.dumps(rows[-1]), flush=True)
    print_table(rows)
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| patients | cases | slices | index cold s | index cached s | index arrays MiB | list of records MiB "
          "| main peak RSS MiB | worker peak RSS / PSS MiB | loader slices/s (in-process) | slices/s (workers) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['patients']} | {r['cases']} | {r['slices']} | {r['index_cold_s']:.1f} | {r['index_cached_s']:.2f} "
              f"| {r['index_mib']:.1f} | {r['record_list_mib']:.0f} | {r['main_peak_rss_mib']:.0f} "
              f"| {r.get('worker_peak_rss_mib', float('nan')):.0f} / {r.get('worker_pss_mib', float('nan')):.0f} "
              f"| {r['loader_slices_per_s']:.1f} | {r.get('workers_slices_per_s', float('nan')):.1f} |")
