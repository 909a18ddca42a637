"""Cached pretraining: the folder of a (dataset, plans, configuration, method, config) and its encoder.

``$nnUNet_results/<DatasetName>/glrp_pretraining/<method>__<plans>__<configuration>__<hash>/``.
The hash covers every config field (seed included) and the digest of the pretraining data (the train/val
patients and their cases in ``glrp_split.json``, see ``data.pretraining_data_manifest``, and those of every
extra pool, ``preparation.extra_pools``), so neither a
changed hyperparameter nor a re-converted dataset with another split reuses a stale encoder (one trained
on patients that are now test patients). ``config.json`` of the folder records the data digest and the
patients; a reused folder whose record disagrees is an error naming the folder. ``ensure_pretrained``
takes an exclusive lock file in that folder: a second process calling it meanwhile blocks, then finds
``pretrained_encoder.pth`` and returns it without training.

Under a process group of N ranks (``-num_gpus N``, torchrun, or the ranks of ``nnUNetv2_train -num_gpus N``) every
rank calls ``ensure_pretrained`` and the pretraining runs ONCE, distributed over the N ranks (rank 0 holds the lock
and writes; the others train their shares, see ``distributed``); when the batch size is not divisible by N it runs
once on the first rank to take the lock while the others wait on the lock file, as with independent processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import contextlib

import torch

from nnunetv2_glrp.data import data_digest, pretraining_data_manifest
from nnunetv2_glrp.dataset_split import read_split
from nnunetv2_glrp.models import load_plans_context
from nnunetv2_glrp.preparation.extra_pools import manifest_with_pools, pool_names
from nnunetv2_glrp.pretraining.checkpoint import file_lock
from nnunetv2_glrp.pretraining.config import PretrainingConfig, make_config
from nnunetv2_glrp.pretraining.distributed import RankGroup, current_rank_group
from nnunetv2_glrp.pretraining.loop import ENCODER, run_pretraining
from nnunetv2_glrp.torch_files import load_torch_file

logger = logging.getLogger(__name__)


def _dataset_name(dataset_name_or_id: str | int) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    return maybe_convert_to_dataset_name(dataset_name_or_id)


def data_manifest(dataset_name: str, extra_pools: Sequence[str] = ()) -> dict:
    """The pretraining data manifest of a preprocessed dataset (from its ``glrp_split.json``), with that of each
    extra pool (dataset names, ``preparation.extra_pools``)."""
    manifest = pretraining_data_manifest(read_split(Path(os.environ["nnUNet_preprocessed"]) / dataset_name))
    return manifest_with_pools(manifest, tuple(extra_pools))


def folder_for_config(dataset_name: str, configuration: str, plans_identifier: str, config: PretrainingConfig,
                      data_digest: str) -> Path:
    """``<results>/<dataset>/glrp_pretraining/<method>__<plans>__<configuration>__<hash(config, data)>``."""
    key = hashlib.sha1(f"{config.digest()}:{data_digest}".encode()).hexdigest()[:10]
    name = f"{config.method}__{plans_identifier}__{configuration}__{key}"
    return Path(os.environ["nnUNet_results"]) / dataset_name / "glrp_pretraining" / name


def _folder_and_manifest(dataset_name_or_id, configuration, method, plans_identifier, preset, seed, overrides,
                         extra_pools=()):
    config = make_config(method, preset, seed, **overrides)
    dataset_name = _dataset_name(dataset_name_or_id)
    manifest = data_manifest(dataset_name, pool_names(extra_pools, dataset_name))
    folder = folder_for_config(dataset_name, configuration, plans_identifier, config, data_digest(manifest))
    return config, dataset_name, folder, manifest


def verify_pretraining_data(folder: Path, manifest: dict) -> None:
    """Raise ValueError naming ``folder`` unless its ``config.json`` records this data digest and patients."""
    record_path = Path(folder) / "config.json"
    try:
        recorded = json.loads(record_path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder}: no data record in {record_path.name} ({e!r}); cannot prove which patients its "
                         f"encoder was trained on; delete {folder} to pretrain again") from e
    expected = {"digest": data_digest(manifest), "patients": manifest["patients"]}
    for key, value in expected.items():
        if recorded.get(key) != value:
            raise ValueError(f"{folder}: pretrained on data with {key} {recorded.get(key)!r}, but the dataset now gives "
                             f"{value!r} (re-converted or re-split?); delete {folder} to pretrain again")


def ensure_pretrained(dataset_name_or_id: str | int, configuration: str, method: str = "GLRP",
                      plans_identifier: str = "nnUNetPlans", preset: str = "cpu", device: str = "cpu",
                      seed: int = 0, extra_pools: Sequence[str | int] = (), **overrides) -> Path:
    """Path of ``pretrained_encoder.pth``; runs (or resumes) pretraining only when it is missing.

    ``extra_pools``: other converted datasets whose train/val frames join the pretraining
    (``preparation.extra_pools``); they are part of the cache key. A reused encoder's folder must record the
    current data digest and patients (ValueError otherwise). Under a process group every rank must call it (see the
    module docstring)."""
    config, dataset_name, folder, manifest = _folder_and_manifest(dataset_name_or_id, configuration, method,
                                                                  plans_identifier, preset, seed, overrides,
                                                                  extra_pools)
    final = folder / ENCODER
    group = current_rank_group()
    if group.world > 1 and config.batch_size % group.world == 0:
        return _ensure_pretrained_distributed(dataset_name, configuration, plans_identifier, config, folder, manifest,
                                              device, extra_pools, group)
    if final.is_file():
        verify_pretraining_data(folder, manifest)
        logger.info("reusing %s", final)
        return final
    with file_lock(folder / ".lock"):
        if final.is_file():  # another process finished it while we waited
            verify_pretraining_data(folder, manifest)
            logger.info("reusing %s (finished by another process)", final)
            return final
        ctx = load_plans_context(dataset_name, configuration, plans_identifier)
        run_pretraining(ctx, config, folder, device=device, extra_pools=pool_names(extra_pools, dataset_name),
                        distributed=False)
    verify_pretraining_data(folder, manifest)
    return final


def _ensure_pretrained_distributed(dataset_name, configuration, plans_identifier, config, folder, manifest, device,
                                   extra_pools, group: RankGroup) -> Path:
    """Every rank: wait until no other process holds the lock (on the lock file, no collective, so an independent
    pretraining of any length cannot hit the process-group timeout), then follow rank 0's view of the cache; when it
    is missing, rank 0 takes the lock and all ranks pretrain together."""
    final = folder / ENCODER
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        pass
    if not group.broadcast_flag(final.is_file()):
        with file_lock(folder / ".lock") if group.main else contextlib.nullcontext():
            if not group.broadcast_flag(final.is_file()):  # still missing now that rank 0 holds the lock
                ctx = load_plans_context(dataset_name, configuration, plans_identifier)
                run_pretraining(ctx, config, folder, device=device, extra_pools=pool_names(extra_pools, dataset_name),
                                distributed=True)
            group.barrier()  # the encoder is written before rank 0 releases the lock
    elif group.main:
        logger.info("reusing %s", final)
    verify_pretraining_data(folder, manifest)
    return final


def cached_encoder(dataset_name_or_id: str | int, configuration: str, method: str = "GLRP",
                   plans_identifier: str = "nnUNetPlans", preset: str = "cpu", seed: int = 0,
                   extra_pools: Sequence[str | int] = (), **overrides) -> tuple[Path, Path | None]:
    """(cache folder, its ``pretrained_encoder.pth`` or None when not pretrained yet) of the entry
    :func:`ensure_pretrained` would use; never pretrains. A finished entry's data record is verified."""
    _, dataset_name, folder, manifest = _folder_and_manifest(dataset_name_or_id, configuration, method,
                                                             plans_identifier, preset, seed, overrides, extra_pools)
    final = folder / ENCODER
    if not final.is_file():
        return folder, None
    verify_pretraining_data(folder, manifest)
    return folder, final


def check_named_encoder(path: str | os.PathLike, dataset_name_or_id: str | int, configuration: str, method: str,
                        plans_identifier: str) -> Path:
    """Check a ``pretrained_encoder.pth`` a user names for fine-tuning; return its path.

    It must be a finished run of ``method`` on this plans identifier and configuration, and its folder's
    ``config.json`` must record this dataset's pretraining data (digest and patients): an encoder
    pretrained on another split may have seen today's test patients. ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained encoder {path} not found")
    blob = load_torch_file(path, "pretrained encoder")
    if not isinstance(blob, dict) or "encoder_state_dict" not in blob:
        raise ValueError(f"{path} is not a GLRP pretrained encoder (no 'encoder_state_dict' key)")
    expected = {"method": method, "plans_identifier": plans_identifier, "configuration": configuration}
    for key, value in expected.items():
        if blob.get(key) != value:
            raise ValueError(f"{path}: pretrained with {key} {blob.get(key)!r}, but this fine-tuning needs {value!r}")
    dataset_name = _dataset_name(dataset_name_or_id)
    verify_pretraining_data(path.parent, data_manifest(dataset_name, recorded_pools(path.parent)))
    return path


def recorded_pools(folder: str | os.PathLike) -> tuple[str, ...]:
    """The extra pools a pretraining folder's ``config.json`` records (none for one without)."""
    try:
        return tuple(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["data"].get("extra_pools", ()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ()


def load_pretrained_encoder_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The encoder state dict of a ``pretrained_encoder.pth`` (keys relative to ``network.encoder``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained encoder {path} not found")
    blob = load_torch_file(path, "pretrained encoder")
    if not isinstance(blob, dict) or "encoder_state_dict" not in blob:
        raise ValueError(f"{path} is not a GLRP pretrained encoder (no 'encoder_state_dict' key)")
    return blob["encoder_state_dict"]
