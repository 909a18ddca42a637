#!/bin/bash
# Pretraining on one GPU at the paper's settings (the `full` preset: batch 12 slices = 24 views, PSM over the full
# 288 px boxes; the `paper_unet` plan), on the phantom: the figures of docs/benchmarks.md "Pretraining on a GPU".
#
#   bash benchmarks/bench_gpu.sh ROOT OUT [WORKERS]
#
# ROOT: a GLRP_DATA-style folder holding Dataset901 prepared with the paper_unet plan (made here when missing:
# `bench_pretraining.py --root ROOT -c paper_unet` makes a 10-patient phantom). OUT: a folder for the log and
# steps.jsonl / epochs.jsonl (one JSON row per figure). WORKERS: augmentation processes of the end-to-end runs
# (default: CPU cores - 2). Each stage is independent: a failed one is reported and the next runs.
#  1. single steps, data loading inline (slices/s of the model step alone = what the GPU sustains when the
#     workers keep up): float32, bf16, bf16 + channels_last, fp16 (gradient scaler), the PSM in the loader
#     (CPU) for comparison, the `cpu` preset (24 px PSM, batch 8), the baselines SimCLR, GCL and PCL (GRP and LRP
#     are GLRP's two terms, timed within it);
#  2. whole run_pretraining epochs with WORKERS augmentation processes (end to end: what a user gets), float32
#     and bf16;
#  3. torch.compile of the encoder (bf16; compiling is not timed);
#  4. fine-tuning: a `_semi` iteration against the same supervised trainer (k = 2, the phantom's fold 0; nnU-Net's
#     WORKERS augmentation processes, then none), with the time spent waiting for the unlabeled batch.
set -uo pipefail
ROOT=$(realpath -m "$1"); OUT=$(realpath -m "$2"); WORKERS=${3:-$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
B="$PY $HERE/benchmarks/bench_pretraining.py --root $ROOT -c paper_unet --device cuda"
G="$B --preset full --method GLRP"  # the paper's preset and method, the subject of most stages
stage() {  # name, then the command; its output goes to the log and the screen
  echo "=== $1 $(date -u +%T)" | tee -a "$OUT/log.txt"
  shift
  "$@" 2>&1 | tee -a "$OUT/log.txt" | grep -v "^\s*$" | tail -n 12
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "!!! stage failed with exit code $rc" | tee -a "$OUT/log.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/log.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee -a "$OUT/log.txt"
S="--iterations 20 --warmup 3 --out $OUT/steps.jsonl"
stage "float32, PSM on the GPU" $G --psm-location device $S
stage "bf16" $G --psm-location device --autocast bf16 $S
stage "bf16 + channels_last" $G --psm-location device --autocast bf16 --channels-last $S
stage "fp16 + gradient scaler" $G --psm-location device --autocast fp16 $S
stage "float32, PSM in the loader (CPU)" $G --psm-location loader --iterations 3 --warmup 1 --out "$OUT/steps.jsonl"
stage "cpu preset (PSM 24 px, batch 8)" $B --preset cpu --method GLRP --psm-location device $S
stage "the baselines, bf16" $B --preset full --method SimCLR GCL PCL --psm-location device --autocast bf16 $S
E="--epochs 3 --iterations 40 --workers $WORKERS --psm-location device --out $OUT/epochs.jsonl"
stage "end to end, $WORKERS workers, float32" $G $E
stage "end to end, $WORKERS workers, bf16" $G --autocast bf16 $E
stage "bf16 + torch.compile (default mode)" timeout 150 $G --psm-location device --autocast bf16 --compile default $S
F="$PY $HERE/benchmarks/bench_finetuning.py --root $ROOT -c paper_unet --device cuda --threads 4 \
   --trainer RandomInitTrainer_k2_semi_tiny --baseline RandomInitTrainer_k2_tiny --iterations 10 --warmup 3 --rounds 3"
stage "_semi vs supervised fine-tuning, $WORKERS workers" env nnUNet_n_proc_DA=$WORKERS $F --out "$OUT/semi_cost.json"
stage "_semi vs supervised fine-tuning, loading inline" env nnUNet_n_proc_DA=0 $F --out "$OUT/semi_cost_inline.json"
echo "=== done $(date -u +%T)" | tee -a "$OUT/log.txt"
