"""The ``_semi`` recipe (weak-to-strong consistency on the unlabeled cine frames): loss pieces against slow loops
and known answers, the unlabeled pool (never a test patient, never a labeled frame), CutMix, the stream's
seeding, a step against nnU-Net's own step, and resume."""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from phantom_trainer import build_started_trainer

from nnunetv2_glrp.finetuning.semi_config import SemiSupervisedConfig
from nnunetv2_glrp.finetuning.semi_supervised import (
    batch_partner, channel_dropout, confident_cross_entropy, cutmix, pseudo_labels, rampup_weight, unlabeled_loss,
)

NO_STRONG = SemiSupervisedConfig(p_intensity=0.0, p_blur=0.0, p_cutmix=0.0)


def _slow_confident_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> float:
    total, count = 0.0, 0
    b, k, h, w = logits.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                count += 1
                if mask[i, y, x]:
                    z = [float(logits[i, c, y, x]) for c in range(k)]
                    top = max(z)
                    total += -(z[int(labels[i, y, x])] - top - math.log(sum(math.exp(v - top) for v in z)))
    return total / count


def test_confident_cross_entropy_matches_a_slow_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g) * 3
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    mask = torch.rand(2, 5, 6, generator=g) > 0.4
    assert 0 < mask.sum() < mask.numel()
    assert float(confident_cross_entropy(logits, labels, mask)) == pytest.approx(
        _slow_confident_ce(logits, labels, mask), rel=1e-5)


def test_pseudo_labels_threshold_the_max_softmax():
    logits = torch.tensor([[[[4.0]], [[0.0]]], [[[0.2]], [[0.0]]]])  # [2, 2, 1, 1]: p = 0.982 and 0.550
    labels, mask = pseudo_labels(logits, 0.95)
    assert labels.flatten().tolist() == [0, 0] and mask.flatten().tolist() == [True, False]
    assert not pseudo_labels(logits, 1.01)[1].any()


def test_perfect_teacher_without_perturbation_gives_the_supervised_cross_entropy():
    from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

    g = torch.Generator().manual_seed(1)
    truth = torch.randint(0, 4, (3, 8, 8), generator=g)
    teacher = torch.nn.functional.one_hot(truth, 4).permute(0, 3, 1, 2).float() * 30  # certain and right
    student = torch.randn(3, 4, 8, 8, generator=g)
    labels, mask = pseudo_labels(teacher, 0.95)
    assert torch.equal(labels, truth) and mask.all()
    # no perturbation: the strong views and the feature-perturbed pass see the weak view itself
    loss = unlabeled_loss((student, student), student, labels, mask, ((labels, mask), (labels, mask)), (0.25, 0.25), 0.5)
    supervised_ce = RobustCrossEntropyLoss()(student, truth[:, None].float())  # nnU-Net's CE term
    assert float(loss) == pytest.approx(float(supervised_ce), rel=1e-6)
    # a teacher confident on part of the pixels: the CE of exactly those pixels (per pixel of the batch)
    teacher[:, :, :4] /= 30  # rows 0-3: max softmax 0.475 < 0.95
    labels, mask = pseudo_labels(teacher, 0.95)
    assert mask[:, 4:].all() and not mask[:, :4].any()
    per_pixel = torch.nn.functional.cross_entropy(student, truth, reduction="none")
    assert float(confident_cross_entropy(student, labels, mask)) == pytest.approx(
        float(per_pixel[:, 4:].sum() / per_pixel.numel()), rel=1e-6)


def test_threshold_above_one_gives_exactly_zero_loss_and_gradient():
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels, mask = pseudo_labels(torch.randn(2, 3, 4, 4) * 50, 1.01)
    loss = unlabeled_loss((student, student), student, labels, mask, ((labels, mask), (labels, mask)), (0.25, 0.25), 0.5)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.count_nonzero(student.grad) == 0


def test_cutmix_mixes_image_and_pseudo_label_with_the_same_box():
    b, h, w = 3, 6, 7
    images = torch.arange(b * 2 * h * w, dtype=torch.float32).view(b, 2, h, w)
    labels = torch.arange(b)[:, None, None].expand(b, h, w).clone()  # slice i is labelled i everywhere
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    mask[1] = True  # only slice 1 is confident
    box = torch.zeros(b, h, w, dtype=torch.bool)
    box[:, 1:4, 2:6] = True
    box[2] = False  # slice 2 not mixed
    partner = batch_partner(b)
    assert partner.tolist() == [2, 0, 1]
    mixed_images, mixed_labels, mixed_mask = cutmix(images, box, partner), cutmix(labels, box, partner), \
        cutmix(mask, box, partner)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                source = int(partner[i]) if box[i, y, x] else i
                assert torch.equal(mixed_images[i, :, y, x], images[source, :, y, x])
                assert int(mixed_labels[i, y, x]) == source  # the label follows the image
                assert bool(mixed_mask[i, y, x]) == (source == 1)  # and so does the confidence mask


def test_stream_batches_are_seeded_cutmixed_views_of_the_weak_view(tmp_path):
    from nnunetv2_glrp.finetuning.unlabeled_stream import make_batch

    records = _fake_records(tmp_path, 5)
    cfg = replace(NO_STRONG, p_cutmix=1.0)
    first = make_batch(records, 7, 3, (12, 10), cfg, run_seed=0)
    again = make_batch(records, 7, 3, (12, 10), cfg, run_seed=0)
    other = make_batch(records, 8, 3, (12, 10), cfg, run_seed=0)
    assert first["slices"] == again["slices"] and torch.equal(first["weak"], again["weak"])
    assert not torch.equal(first["weak"], other["weak"])
    assert len(set(first["slices"])) == 3  # drawn without replacement
    for v in range(2):
        assert first["boxes"][v].any(dim=(1, 2)).all()
        assert torch.equal(first["strong"][v], cutmix(first["weak"], first["boxes"][v], first["partner"]))
    # the strong views differ from the weak view once jitter and blur are on, and stay seeded
    jitter = make_batch(records, 7, 3, (12, 10), replace(cfg, p_intensity=1.0, p_blur=1.0), run_seed=0)
    assert torch.equal(jitter["weak"], first["weak"])  # the strong draws come after the weak ones
    assert not torch.equal(jitter["strong"][0], cutmix(jitter["weak"], jitter["boxes"][0], jitter["partner"]))


def _fake_records(tmp_path: Path, n: int):
    """n SliceRecords of an in-memory-like folder: patched reader (no nnU-Net folder needed)."""
    from nnunetv2_glrp.data.slice_index import SliceRecord
    from nnunetv2_glrp.finetuning import unlabeled_stream

    rng = np.random.default_rng(0)
    images = {f"p{i}_t01": rng.normal(size=(1, 3, 16, 14)).astype(np.float32) for i in range(n)}
    unlabeled_stream.read_slice = lambda folder, case, index: images[case][:, index]  # restored by the fixture
    return [SliceRecord(os.fspath(tmp_path), case, 1, 2, 3, case[:2], "unlabeled") for case in sorted(images)]


@pytest.fixture(autouse=True)
def _restore_reader():
    from nnunetv2_glrp.finetuning import unlabeled_stream

    original = unlabeled_stream.read_slice
    yield
    unlabeled_stream.read_slice = original


def test_rampup_and_channel_dropout():
    assert rampup_weight(0, 100, 0.2, 2.0) == pytest.approx(2.0 * math.exp(-5))
    assert rampup_weight(10, 100, 0.2, 2.0) == pytest.approx(2.0 * math.exp(-5 * 0.25))
    assert rampup_weight(20, 100, 0.2, 2.0) == 2.0 and rampup_weight(0, 100, 0.0, 2.0) == 2.0
    features = torch.ones(64, 32, 3, 3)
    out = channel_dropout(features, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(out, channel_dropout(features, 0.5, torch.Generator().manual_seed(3)))
    per_channel = out[:, :, 0, 0]
    assert torch.equal(out, per_channel[:, :, None, None].expand_as(out))  # whole channels
    assert set(per_channel.unique().tolist()) == {0.0, 2.0}
    assert 0.4 < float((per_channel == 0).float().mean()) < 0.6


# ---- the pool on the session phantom ------------------------------------------------------------------
def _phantom(config: str):
    from nnunetv2_glrp.dataset_split import read_split

    base = Path(os.environ["nnUNet_preprocessed"]) / "Dataset901_ACDC"
    plans = json.loads((base / "nnUNetPlans.json").read_text(encoding="utf-8"))
    folder = base / f"{plans['configurations'][config]['data_identifier']}_unlabeled"
    return base, folder, read_split(base)


def test_unlabeled_pool_holds_train_and_val_patients_only_and_no_labeled_frame(phantom_preprocessed):
    from nnunetv2_glrp.finetuning.unlabeled_stream import build_unlabeled_pool

    _, folder, split = _phantom(phantom_preprocessed)
    labeled = [c for c, info in split["cases"].items() if info["kind"] == "labeled" and info["patient"] == split["train"][0]]
    pool = build_unlabeled_pool(folder, split, labeled, batch_size=2)
    patients = {r.patient for r in pool.records}
    assert patients == set(split["train"]) | set(split["val"]) and not patients & set(split["test"])
    frames = {(split["cases"][c]["patient"], split["cases"][c]["phase"]) for c in labeled}
    assert len(frames) == 2 and pool.excluded_slices > 0 and not pool.labeled_frames_kept
    assert not [r for r in pool.records if (r.patient, split["cases"][r.case]["phase"]) in frames]
    # a patient moved to the test set leaves the pool, even though its frames are still in the folder
    moved = copy.deepcopy(split)
    patient = split["train"][1]
    moved["train"].remove(patient)
    moved["test"].append(patient)
    for info in moved["cases"].values():
        if info["patient"] == patient:
            info["set"] = "test"
    assert patient not in {r.patient for r in build_unlabeled_pool(folder, moved, labeled, 2).records}
    # DDP shards are disjoint and cover the pool
    shards = [build_unlabeled_pool(folder, split, labeled, 2, rank, 2).records for rank in (0, 1)]
    assert not set(shards[0]) & set(shards[1]) and set(shards[0]) | set(shards[1]) == set(pool.records)
    # a pool too small without the labeled frames keeps them and says so
    only = copy.deepcopy(split)
    only["train"], only["val"] = [split["train"][0]], []
    only["test"] = [p for p in split["train"] + split["val"] + split["test"] if p != split["train"][0]]
    for info in only["cases"].values():
        info["set"] = "train" if info["patient"] == split["train"][0] else "test"
    small = build_unlabeled_pool(folder, only, labeled, batch_size=10_000)
    assert small.labeled_frames_kept and {r.patient for r in small.records} == {split["train"][0]}


# ---- the trainer on the session phantom ---------------------------------------------------------------
def _semi_recipe(**changes):
    from nnunetv2_glrp.finetuning.recipes import SEMI_RECIPE

    return replace(SEMI_RECIPE, semi=replace(SEMI_RECIPE.semi, **changes))


def _build(cls: type, config: str):
    return build_started_trainer(cls, config)


def _semi_class(name: str, recipe, epochs: int, iterations: int, k: int | None = None) -> type:
    from nnunetv2_glrp.finetuning.recipes import FineTuningBudget
    from nnunetv2_glrp.finetuning.semi_trainer import SemiSupervisedTrainerMixin
    from nnunetv2_glrp.finetuning.trainer_base import GLRPFineTuningTrainer

    budget = FineTuningBudget(name="semitest", num_epochs=epochs, iterations_per_epoch=iterations,
                              val_iterations_per_epoch=1)
    return type(name, (SemiSupervisedTrainerMixin, GLRPFineTuningTrainer), {
        "pretraining_method": None, "k_labeled": k, "recipe": recipe, "budget": budget})


def test_semi_step_with_threshold_above_one_is_nnunets_step(phantom_preprocessed, monkeypatch):
    """Same seeds, same labeled batches: losses and weights equal nnU-Net's own trainer's, while the unlabeled
    branch runs (teacher, strong views, feature-perturbed pass); with a threshold that lets pixels through the
    weights differ (the comparison can fail)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    monkeypatch.delenv("GLRP_SEED", raising=False)
    nnunet = _build(nnUNetTrainer, phantom_preprocessed)
    batches = [next(nnunet.dataloader_train) for _ in range(4)]
    semi = _build(_semi_class("SemiEquivalence", _semi_recipe(threshold=1.01), 1000, 250), phantom_preprocessed)
    open_semi = _build(_semi_class("SemiOpen", _semi_recipe(threshold=0.0, rampup_fraction=0.0), 1000, 250),
                       phantom_preprocessed)
    for trainer in (nnunet, semi, open_semi):
        trainer.current_epoch = 0
        trainer.on_train_epoch_start()
    nnunet_losses = [float(nnunet.train_step(b)["loss"]) for b in batches]
    outputs = [semi.train_step(b) for b in batches]
    assert [float(o["loss"]) for o in outputs] == nnunet_losses and len(set(nnunet_losses)) == 4
    assert all(float(o["loss_unlabeled"]) == 0.0 and float(o["confident_fraction"]) == 0.0 for o in outputs)
    params = dict(nnunet.network.named_parameters())
    assert all(torch.equal(p, params[n]) for n, p in semi.network.named_parameters())
    opened = open_semi.train_step(batches[0])
    assert float(opened["loss_unlabeled"]) > 0 and float(opened["confident_fraction"]) == 1.0
    semi._semi_stream.close()
    open_semi._semi_stream.close()


class Killed(Exception):
    """Stands for the process being killed inside an epoch."""


def _resume_class(name: str) -> type:
    base = _semi_class(name, _semi_recipe(threshold=0.3, rampup_fraction=0.0), 2, 3, k=2)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # nnU-Net records these by name: no *args
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.save_every = 1  # checkpoint_latest after every epoch
        self.stream_seen = []

    def _check_no_reuse(self, batch, unlabeled):
        self.stream_seen.append((unlabeled["index"], unlabeled["slices"], float(unlabeled["strong"][1].sum())))
        if self.current_epoch == self.kill_in_epoch and unlabeled["index"] == 4:  # epoch 1, second iteration
            raise Killed
        return base._check_no_reuse(self, batch, unlabeled)

    return type(name, (base,), {"__init__": __init__, "_check_no_reuse": _check_no_reuse, "kill_in_epoch": None,
                                "perform_actual_validation": lambda self, *a, **k: None})


def test_killed_semi_run_resumes_with_the_same_stream_and_result(phantom_preprocessed, monkeypatch):
    monkeypatch.setenv("GLRP_SEED", "1")
    whole = _build(_resume_class("SemiWhole"), phantom_preprocessed)
    whole.run_training()
    cls = _resume_class("SemiKilled")
    cls.kill_in_epoch = 1
    killed = _build(cls, phantom_preprocessed)
    with pytest.raises(Killed):
        killed.run_training()
    killed._semi_stream.close()
    cls.kill_in_epoch = None
    resumed = _build(cls, phantom_preprocessed)
    resumed.load_checkpoint(os.path.join(resumed.output_folder, "checkpoint_latest.pth"))
    assert resumed.current_epoch == 1
    resumed.run_training()
    assert [s[0] for s in whole.stream_seen] == list(range(6))
    assert killed.stream_seen == whole.stream_seen[:5]  # epoch 0 and the first two batches of epoch 1
    assert resumed.stream_seen == whole.stream_seen[3:]  # epoch 1 again, from its first batch
    assert len({s[1][0] for s in whole.stream_seen}) > 1
    expected = whole.network.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in resumed.network.state_dict().items())
    setup = json.loads((Path(resumed.output_folder) / "glrp_finetuning.json").read_text(encoding="utf-8"))
    assert setup["recipe"]["semi"]["threshold"] == 0.3 and setup["semi"]["labeled_frames_kept"] is False


def test_reproduce_and_the_listing_name_the_semi_trainers():
    import argparse

    from nnunetv2_glrp.commands.reproduce import configure
    from nnunetv2_glrp.finetuning.variants import shipped_trainer_names
    from nnunetv2_glrp.reproduction.grid import trainer_name

    assert trainer_name("RandomInitTrainer", 2, "cpu", "semi") == "RandomInitTrainer_k2_semi_cpu"
    assert trainer_name("GLRPTrainer", 6, "full", "semi") == "GLRPTrainer_k6_semi"
    assert trainer_name("NnunetControlTrainer", 2, "cpu", "semi") == "NnunetControlTrainer_cpu"  # the control row
    parser = argparse.ArgumentParser()
    configure(parser)
    assert parser.parse_args(["-d", "1", "-c", "2d", "--recipe", "semi"]).recipe == "semi"
    names = set(shipped_trainer_names())
    assert {"GLRPTrainer_k2_semi_cpu", "RandomInitTrainer_k2_semi_cpu", "GLRPTrainer_k6_semi",
            "GLRPTrainer_k6_semi_cpulong"} <= names


def test_weak_view_geometry_and_blur_against_references():
    from scipy.ndimage import gaussian_filter

    from nnunetv2_glrp.finetuning.strong_augmentation import _gaussian_blur, weak_view

    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 9, 9)).astype(np.float32)
    still = SemiSupervisedConfig(p_rotation=0.0, p_scaling=0.0, p_mirror=0.0)
    view = weak_view(image, (9, 9), still, np.random.default_rng(1))
    assert torch.allclose(view, torch.from_numpy(image), atol=1e-5)  # patch = slice: the identity
    quarter = replace(still, p_rotation=1.0, rotation=(math.pi / 2, math.pi / 2))
    turned = weak_view(image, (9, 9), quarter, np.random.default_rng(1))
    assert any(torch.allclose(turned, torch.rot90(torch.from_numpy(image), r, dims=(1, 2)), atol=1e-4) for r in (1, 3))
    assert not torch.allclose(turned, torch.from_numpy(image), atol=1e-2)
    mirrored = weak_view(image, (9, 9), replace(still, p_mirror=1.0), np.random.default_rng(1))
    assert torch.allclose(mirrored, torch.from_numpy(image[:, ::-1, ::-1].copy()), atol=1e-5)
    crop = weak_view(rng.normal(size=(1, 40, 30)).astype(np.float32), (16, 12), still, np.random.default_rng(2))
    assert crop.shape == (1, 16, 12)
    blurred = _gaussian_blur(torch.from_numpy(image), 1.0)
    reference = gaussian_filter(image[0].astype(np.float64), 1.0, mode="nearest", truncate=3.0)
    assert np.allclose(blurred[0].numpy(), reference, atol=1e-5)
