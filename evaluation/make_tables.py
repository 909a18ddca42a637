"""Rewrite the tables and figures of a ``reproduce`` output folder from its run records; trains nothing.

    python evaluation/make_tables.py OUT [--bootstrap 10000] [--bootstrap_seed 1] [--table 1]

Reads ``OUT/reproduce.json`` (the table, methods, k, dataset of the last call) and ``OUT/runs/*.json``,
and writes ``OUT/table<N>.md``, ``.json`` and the PNGs again, e.g. with more bootstrap resamples or
another bootstrap seed. The test slices need the raw dataset (``$nnUNet_raw/<dataset>``); without
it that figure is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a reproduce output folder (holds reproduce.json and runs/)")
    parser.add_argument("--table", type=int, default=None, help="table number (default: that of reproduce.json)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--bootstrap_seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    args = parser.parse_args(argv)

    from nnunetv2_glrp.reproduction import results
    from nnunetv2_glrp.reproduction.api import write_outputs
    from nnunetv2_glrp.reproduction.engine import dataset_labels
    from nnunetv2_glrp.reproduction.grid import plan_runs

    call_file = args.out / "reproduce.json"
    if not call_file.is_file():
        raise SystemExit(f"{call_file} not found: not a reproduce output folder")
    call = json.loads(call_file.read_text())
    runs = plan_runs(call["methods"], call["k"], call["folds"], call["seeds"])
    records = results.read_records(args.out, runs)
    if not records:
        raise SystemExit(f"no run records of {call_file}'s grid in {args.out / results.RUNS_FOLDER}")
    raw = Path(os.environ.get("nnUNet_raw", "")) / call["dataset"]
    if (raw / "dataset.json").is_file():
        labels = dataset_labels(raw)
    else:  # the class names of the records themselves (the values only colour the slices, left out then)
        labels = {name: i + 1 for i, name in enumerate(records[0].classes)}
    context = (f"{call['dataset']}, configuration {call['configuration']}, plans {call['plans']}, budget "
               f"{call['budget']}, recipe {call['recipe']}; folds {call['folds']}, seeds {call['seeds']} "
               "(tables rewritten by evaluation/make_tables.py).")
    files = write_outputs(records, args.table or call["table"], call["methods"], call["k"], args.out, raw, labels,
                          context, n_boot=args.bootstrap, bootstrap_seed=args.bootstrap_seed,
                          slices=(raw / "imagesTs").is_dir())
    print("written: " + ", ".join(os.fspath(p) for p in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
