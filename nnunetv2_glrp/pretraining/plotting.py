"""Loss curve of a pretraining run as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def plot_loss_curve(history: dict, path: Path) -> None:
    """Left: per-epoch means of the total, GRP and LRP terms, with the min-max range of the total loss over
    the epoch's iterations as a band. Right: each term's excess over its floor (loss minus the entropy of
    its soft targets, i.e. the KL divergence that pretraining can still remove) per iteration, log
    scale, with epoch boundaries: "3.13 -> 3.01" on the left may be most of what there was to learn;
    dashed, per epoch, the excess collapsed (identical) embeddings would have: a curve on its dashed line
    has learned nothing that tells the slices apart. Atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = history["epoch"]
    if not ep:
        return
    fig, (ax, ax_kl) = plt.subplots(1, 2, figsize=(12, 4))
    _plot_epoch_means(ax, ep)
    _plot_excess(ax_kl, ep)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _plot_epoch_means(ax, ep: list[dict]) -> None:
    x = np.arange(1, len(ep) + 1)
    if all("loss_min" in e and "loss_max" in e for e in ep):
        ax.fill_between(x, [e["loss_min"] for e in ep], [e["loss_max"] for e in ep], color="gray", alpha=0.25,
                        lw=0, label="total, min-max over the epoch")
    for key, colour in (("loss", "black"), ("grp", "tab:blue"), ("lrp", "tab:orange")):
        y = np.array([e[key] for e in ep], dtype=float)
        if np.isfinite(y).any():
            ax.plot(x, y, marker="o", ms=3, color=colour, label=f"{key} (epoch mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("GLRP pretraining")
    ax.legend(fontsize=8)


def _plot_excess(ax, ep: list[dict]) -> None:
    drawn = False
    for key, colour in (("grp", "tab:blue"), ("lrp", "tab:orange")):
        per_it = [v for e in ep for v in e.get(f"{key}_excess_per_iteration", [])]
        y = np.array(per_it, dtype=float)
        if y.size and np.isfinite(y).any():
            ax.plot(np.arange(1, y.size + 1), np.clip(y, 1e-4, None), lw=1, color=colour,
                    label=f"{key} - target entropy (per batch)")
            _plot_collapse_level(ax, ep, key, colour)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no soft-target term (paper-literal loss has no entropy floor)", ha="center",
                va="center", transform=ax.transAxes, fontsize=8)
        return
    bounds = np.cumsum([len(e.get("grp_excess_per_iteration", [])) for e in ep])[:-1]
    for b in bounds:
        ax.axvline(b + 0.5, color="gray", lw=0.5, alpha=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("iteration (grey lines: epochs)")
    ax.set_ylabel("KL divergence to the targets")
    ax.set_title("loss above its floor")
    ax.legend(fontsize=8)


def _plot_collapse_level(ax, ep: list[dict], key: str, colour: str) -> None:
    """Per-epoch mean of the excess that collapsed embeddings would have, as a dashed step over the epoch."""
    start = 0
    labelled = False
    for e in ep:
        n = len(e.get(f"{key}_excess_per_iteration", []))
        level = e.get(f"{key}_collapse_excess", float("nan"))
        if n and np.isfinite(level):
            ax.hlines(level, start + 0.5, start + n + 0.5, colors=colour, linestyles="dashed", lw=1,
                      label=None if labelled else f"{key}: collapsed embeddings")
            labelled = True
        start += n
