"""Loss curve of a pretraining run as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def plot_loss_curve(history: dict, path: Path) -> None:
    """Per-epoch means of the total, GRP and LRP terms, with the min-max range of the total loss over the
    epoch's iterations as a band (the history keeps per-epoch statistics only); atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = history["epoch"]
    if not ep:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
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
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
