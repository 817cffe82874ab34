"""Draws chart.png from chart-data.json (written by the tviews-benches command).

Two heatmaps, one row per operation and one column per approach: the median cost of the
approach over plain DML's, and over pg_tviews'. Colours are on a log scale centred on 1:
red is more expensive than the reference, green cheaper.
"""
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def label(v):
    if v is None or not math.isfinite(v):
        return ""
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.2g}"


def main(data_path, out_path):
    with open(data_path) as f:
        d = json.load(f)
    ops = d["ops"]
    panels = d["panels"]
    width = sum(2.2 + 1.05 * len(p["approaches"]) for p in panels) + 1.5
    height = 1.6 + 0.34 * len(ops)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), squeeze=False)
    for ax, p in zip(axes[0], panels):
        vals = np.array(
            [[np.nan if v is None else v for v in row] for row in p["values"]], dtype=float
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            logv = np.log10(vals)
        finite = logv[np.isfinite(logv)]
        lim = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
        ax.imshow(logv, cmap="RdYlGn_r", vmin=-lim, vmax=lim, aspect="auto")
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                text = label(vals[i, j])
                if text:
                    ax.text(j, i, text, ha="center", va="center", fontsize=7.5)
                else:
                    ax.text(j, i, "–", ha="center", va="center", fontsize=7.5, color="grey")
        ax.set_xticks(range(len(p["approaches"])))
        ax.set_xticklabels(p["approaches"], rotation=30, ha="right", fontsize=8.5)
        ax.set_yticks(range(len(ops)))
        ax.set_yticklabels(ops, fontsize=8.5)
        ax.set_title(p["title"], fontsize=10)
    fig.suptitle(d["title"], fontsize=11)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
