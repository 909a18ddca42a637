"""Loss curve of a pretraining run as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def plot_loss_curve(history: dict, path: Path) -> None:
    """Per-iteration total loss (thin) and per-epoch means of the total, GRP and LRP terms; atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = history["iteration"]
    ep = history["epoch"]
    if not it:
        return
    iters_per_epoch = len(it) / max(len(ep), 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(it) + 1) / iters_per_epoch, [t["loss"] for t in it], lw=0.6, alpha=0.4,
            color="gray", label="total (per iteration)")
    x = np.arange(1, len(ep) + 1)
    for key, colour in (("loss", "black"), ("grp", "tab:blue"), ("lrp", "tab:orange")):
        y = np.array([e[key] for e in ep], dtype=float)
        if np.isfinite(y).any():
            ax.plot(x, y, marker="o", ms=3, color=colour, label=f"{key} (epoch mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("GLRP pretraining")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
