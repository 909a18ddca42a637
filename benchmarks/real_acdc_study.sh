#!/bin/bash
# The real-data study of docs/budget_study.md, in the order its questions depend on each other; resumable (the
# engine skips finished runs, a killed training resumes), so it can run in the background across sessions.
#
#   bash benchmarks/real_acdc_study.sh ACDC_ROOT WORK [STAGE...]
#
# ACDC_ROOT: a folder with ACDC's training/ patients (001-100 only: copy training/ alone; testing/ 101-150 is the
# held-out check and must not be used to choose anything). WORK: where the nnU-Net folders and the benchmark go.
# STAGEs (default: all, in this order):
#   prepare   convert training/ (seeded 70/10/20 patient split) as Dataset801_ACDCdev and prepare nnunet_cpu
#   spread    nnU-Net from scratch at the comparison budget (cpulong), k = 2 and 6, seeds 0-2
#   glrp      GLRP at cpulong on the same draws (pretrains once with the cpu preset)
#   budgets   nnU-Net at the other budgets of the study (cpu, cpu500, cpulongsgd, cpu2000)
#   recipes   GLRP with the feature-keeping recipes (decwarm, lpft, enclr, lld) at cpulong
#   longpre   GLRP from a 3,000-iteration pretraining (cpu preset, 60 epochs) at cpulong
#   semi      GLRP and Random with the semi-supervised recipe (_semi: the unlabeled cine frames too) at cpulong
#   perseed   GLRP at cpulong with each seed's own pretraining (pretraining seed = seed: the seeds also draw the
#             pretraining, whose draw moved GLRP's k = 6 mean by 0.013 between two encoders of the same preset)
#   pooled    GLRP from a pretraining that adds the Sunnybrook cine frames as an extra pool (SUNNYBROOK_ROOT: the
#             Sunnybrook layout, converted as Dataset802_Sunnybrook with every patient train/val), at cpulong
#   report    budget_study.py over everything finished
# KS (default "2 6") and SEEDS (default "0 1 2") narrow every stage, e.g. KS=6 to screen the candidate recipes where
# the pretrained encoder must help first (k = 6), then confirm the ones that win at k = 2 with the same seeds.
set -euo pipefail
ACDC_ROOT=$(realpath "$1"); WORK=$(realpath -m "$2"); shift 2
STAGES=${*:-prepare spread glrp budgets recipes semi longpre perseed pooled report}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export nnUNet_raw=$WORK/nnUNet_raw nnUNet_preprocessed=$WORK/nnUNet_preprocessed nnUNet_results=$WORK/nnUNet_results
export nnUNet_extTrainer=${nnUNet_extTrainer:-$HERE/trainers}
PY=${PYTHON:-python}
D=801; C=nnunet_cpu; R=$WORK/bench
KS=${KS:-2 6}; SEEDS=${SEEDS:-0 1 2}
# shellcheck disable=SC2086  # KS and SEEDS are word lists
bench() { $PY "$HERE/benchmarks/bench_few_label.py" --no-phantom -d $D -c $C --root "$R" --k $KS --seeds $SEEDS "$@"; }

for stage in $STAGES; do
  echo "=== $stage $(date -u +%FT%TZ)"
  case $stage in
    prepare)
      if [ -d "$ACDC_ROOT/testing" ]; then echo "refusing $ACDC_ROOT: it has testing/ (held out); give a folder with training/ only" >&2; exit 2; fi
      [ -d "$nnUNet_raw/Dataset801_ACDCdev" ] || nnUNetv2_glrp convert-acdc "$ACDC_ROOT" -d $D --seed 0 --name ACDCdev
      nnUNetv2_glrp prepare -d $D --overlay $C -np 2 ;;
    spread)  bench --budget cpulong --methods nnU-Net --out "$R/cpulong_nnunet.json" ;;
    glrp)    bench --budget cpulong --methods nnU-Net GLRP --out "$R/cpulong.json" ;;
    budgets) for b in cpu cpu500 cpulongsgd cpu2000; do bench --budget $b --methods nnU-Net --out "$R/${b}_nnunet.json"; done ;;
    # nnU-Net is named again so each engine folder holds its paired reference (already trained: only predicted)
    recipes) for r in decwarm lpft enclr lld; do bench --budget cpulong --recipe $r --methods nnU-Net GLRP --out "$R/cpulong_$r.json"; done ;;
    semi)    bench --budget cpulong --recipe semi --methods nnU-Net GLRP Random --out "$R/cpulong_semi.json" ;;
    longpre)
      enc=$(nnUNetv2_glrp pretrain -d $D -c $C -m GLRP --preset cpu --epochs 60 | sed -n 's/^pretrained encoder ([0-9]* tensors): //p')
      bench --budget cpulong --methods nnU-Net GLRP --pretrained-encoder "$enc" --out "$R/cpulong_pre3000.json" ;;
    perseed)
      bench --budget cpulong --methods nnU-Net GLRP --pretraining-seeds per-seed --out "$R/cpulong_per_seed_pretraining.json" ;;
    pooled)
      [ -d "$nnUNet_raw/Dataset802_Sunnybrook" ] || nnUNetv2_glrp convert-sunnybrook "${SUNNYBROOK_ROOT:?set SUNNYBROOK_ROOT}" -d 802 --split 4:1:0 --name Sunnybrook
      enc=$(nnUNetv2_glrp pretrain -d $D -c $C -m GLRP --preset cpu --extra_pools 802 | sed -n 's/^pretrained encoder ([0-9]* tensors): //p')
      bench --budget cpulong --methods nnU-Net GLRP --pretrained-encoder "$enc" --out "$R/cpulong_pooled.json" ;;
    report)
      $PY "$HERE/benchmarks/budget_study.py" --root "$R" --out "$R/budget_study"
      # every recipe at cpulong in one table (rows GLRP_decwarm, ..., GLRP_semi; each paired with nnU-Net)
      recipes=nnunet; for r in decwarm lpft enclr lld semi; do [ -d "$R/engine_cpulong_$r" ] && recipes="$recipes $r"; done
      $PY "$HERE/benchmarks/budget_study.py" --root "$R" --budgets cpulong --recipe $recipes --out "$R/budget_study_recipes"
      for folder in "$R"/engine_cpulong_nnunet__*; do
        suffix=${folder#"$R/engine_cpulong_nnunet"}
        [ -d "$folder" ] && $PY "$HERE/benchmarks/budget_study.py" --root "$R" --budgets cpulong \
          --encoder-suffix "$suffix" --out "$R/budget_study$suffix"
      done
      true ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
