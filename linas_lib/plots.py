"""Figures of the paper: one self-contained function per figure kind, returning a Figure."""

from __future__ import annotations

import math

import numpy as np


def sample_grid(dataset, n: int, rng: np.random.Generator):
    """Image / mask-overlay pairs of ``n`` random images of a :class:`~linas_lib.data.SegDataset`.

    Each pair is a column: the image on top, the image with its defect mask in red below,
    titled with the image name and its defect pixel share.

    Args:
        dataset: the dataset to show.
        n: number of images (fewer if the dataset is smaller).
        rng: chooses the images.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    n = max(1, min(n, len(dataset)))
    idx = np.sort(rng.choice(len(dataset), size=n, replace=False))
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, i in enumerate(idx):
        top, bottom = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
        image, mask = dataset.images[i], dataset.masks[i].astype(bool)
        overlay = image.copy()
        overlay[mask] = (0.4 * overlay[mask] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
        top.imshow(image)
        top.set_title(f"{dataset.names[i]}\n{100 * mask.mean():.1f}% defect", fontsize=7)
        bottom.imshow(overlay)
    fig.suptitle(f"{dataset.source}: image / defect mask (red)", fontsize=9)
    fig.tight_layout()
    return fig


def latency_scatter(rows: list[dict], variants: list[str]):
    """Predicted vs measured end-to-end latency: one panel per target, one colour per variant.

    Args:
        rows: ``validation_measurements.csv`` rows ``{arch, target, measured_ms, pred_<variant>_ms}``.
        variants: the variants to draw, in legend order.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows)
    if "role" in frame:  # calibration anchors were fitted on: the scatter shows held-out architectures
        frame = frame[frame.role == "held_out"]
    targets = list(dict.fromkeys(frame.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(3.2 * len(targets), 3.2), squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = frame[frame.target == target]
        meas = sub.measured_ms.to_numpy()
        for variant in variants:
            ax.scatter(meas, sub[f"pred_{variant}_ms"], s=8, alpha=0.7, label=variant)
        lo, hi = float(meas.min()) * 0.9, float(meas.max()) * 1.1
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.fill_between([lo, hi], [0.95 * lo, 0.95 * hi], [1.05 * lo, 1.05 * hi], color="grey", alpha=0.2)
        ax.set(title=target, xlabel="measured (ms)", ylabel="predicted (ms)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ supernet (notebook 03)


def pad_study(curves: list[dict]):
    """PAD study: the temperature schedule and the alpha entropy over steps, per arm (thin:
    one line per seed; thick: the mean over seeds)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(curves)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for i, (arm, part) in enumerate(frame.groupby("arm", sort=False)):
        colour = f"C{i}"
        for _, seed in part.groupby("seed"):
            axes[1].plot(seed.step, seed.alpha_entropy, color=colour, lw=0.6, alpha=0.4)
        mean = part.groupby("step", as_index=False)[["tau", "alpha_entropy"]].mean()
        axes[0].plot(mean.step, mean.tau, "o-", color=colour, label=arm)
        axes[1].plot(mean.step, mean.alpha_entropy, "o-", color=colour, lw=2, label=arm)
    axes[0].set(xlabel="PAD step", ylabel="Gumbel temperature", yscale="log", title="temperature schedule")
    axes[1].set(xlabel="PAD step", ylabel="alpha entropy (nats, mean over layers)", title="alpha entropy")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def target_search(rows: list[dict], shares: list[dict]):
    """Target search study: per target and arm, the searched architecture's predicted latency
    over the budget and its WS mIoU (means over seeds; hollow: over budget in some seed), and
    each target's share of the joint arms' penalty gradient."""
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows).assign(ratio=lambda f: f.predicted_ms / f.budget_ms)
    targets = list(dict.fromkeys(frame.target))
    x = np.arange(len(targets))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (arm, part) in enumerate(frame.groupby("arm", sort=False)):
        mean = part.groupby("target").agg(ratio=("ratio", "mean"), miou=("ws_miou", "mean"),
                                          meets=("meets_budget", "all")).reindex(targets)
        offset = x + (i - 1) * 0.2
        for ax, column in ((axes[0], "ratio"), (axes[1], "miou")):
            ax.scatter(offset[mean.meets], mean[column][mean.meets], color=f"C{i}", label=arm)
            ax.scatter(offset[~mean.meets], mean[column][~mean.meets], facecolors="none", edgecolors=f"C{i}")
    share = pd.DataFrame(shares).groupby(["arm", "target"], sort=False).grad_share.mean()
    for i, arm in enumerate(share.index.get_level_values(0).unique()):
        axes[2].bar(x + (i - 0.5) * 0.4, share[arm].reindex(targets), width=0.4, color=f"C{i}", label=arm)
    axes[0].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0].set(ylabel="predicted latency / budget", yscale="log", title="searched architecture vs budget")
    axes[1].set(ylabel="WS mIoU (held-out val)", title="searched architecture's accuracy")
    axes[2].set(ylabel="share of the penalty gradient", title="who steers the joint alpha")
    for ax in axes:
        ax.set_xticks(x, targets, rotation=60, ha="right", fontsize=7)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


def supernet_training_curves(history: list[dict]):
    """Supernet training: train loss, val loss terms of the alpha steps, WS mIoU of the argmax path.

    Args:
        history: per-epoch dicts of :func:`linas_lib.supernet.train.run_epoch`.
    """
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    warm = sum(h["phase"] == "warmup" for h in history)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(epochs, [h["train_loss"] for h in history], "o-", label="train (weight steps)")
    for term in ("ce", "dice", "boundary", "latency"):
        vals = [h.get(f"val_{term}") for h in history]
        if any(v is not None for v in vals):
            axes[0].plot(epochs, [np.nan if v is None else v for v in vals], ".--", label=f"val {term} (alpha steps)")
    axes[0].set(xlabel="epoch", ylabel="loss", title="losses")
    axes[1].plot(epochs, [h["ws_miou_argmax"] for h in history], "o-", color="C3")
    axes[1].set(xlabel="epoch", ylabel="mIoU", title="WS mIoU of the argmax architecture (val)")
    for ax in axes:
        if warm:
            ax.axvspan(0.5, warm + 0.5, color="0.9", zorder=0, label="uniform warm-up" if ax is axes[0] else None)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def supernet_arch_probs(history: list[dict], ops, widths):
    """Per-layer op and width probabilities over training (stacked areas, one column per layer).

    Args:
        history: per-epoch dicts with ``p_op`` (5 x 7) and ``p_width`` (5 x 3).
        ops, widths: labels.
    """
    import matplotlib.pyplot as plt

    epochs = np.array([h["epoch"] for h in history])
    p_op = np.array([h["p_op"] for h in history])  # (E, 5, 7)
    p_w = np.array([h["p_width"] for h in history])
    n_layers = p_op.shape[1]
    fig, axes = plt.subplots(2, n_layers, figsize=(2.3 * n_layers, 4.4), sharex=True, sharey=True, squeeze=False)
    for layer in range(n_layers):
        axes[0, layer].stackplot(epochs, p_op[:, layer].T, labels=ops, colors=plt.cm.tab10.colors[: len(ops)])
        axes[1, layer].stackplot(epochs, p_w[:, layer].T, labels=widths, colors=plt.cm.Set2.colors[: len(widths)])
        axes[0, layer].set_title(f"layer {layer + 1}")
        axes[1, layer].set_xlabel("epoch")
    axes[0, 0].set_ylabel("p(op)")
    axes[1, 0].set_ylabel("p(width)")
    axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes[1, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def supernet_expected_latency(history: list[dict], budgets_ms: dict[str, float]):
    """Expected latency E[lat] of each target over training, with its budget (dashed).

    Args:
        history: per-epoch dicts with ``expected_ms`` ``{target: ms}``.
        budgets_ms: ``{target: budget}``.
    """
    import matplotlib.pyplot as plt

    names = list(budgets_ms)
    cols = min(5, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.1 * rows), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, name in zip(axes.flat, names):
        ax.plot(epochs, [h["expected_ms"][name] for h in history], "o-", ms=3)
        ax.axhline(budgets_ms[name], color="C3", ls="--", lw=1, label="budget")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("E[latency] (ms)")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig


METHOD_LABELS = {"random": "random", "alpha": "alpha-guided", "uniform_pareto": "uniform-Pareto",
                 "epr": "EPR (NSGA-II)", "zero_cost": "zero-cost guided (I3)",
                 "random_feasible": "control: random, LUT-feasible", "zero_cost_random_proxy":
                 "control: pre-filter, random proxy", "epr_feasible": "control: EPR, feasible init",
                 "surrogate": "model-based (Thompson, linear)",
                 "surrogate_local": "model-based + local moves",
                 "surrogate_grow": "control: model-based, pool grown at random",
                 "surrogate_pairs": "model-based + local moves + layer pairs",
                 "surrogate_fingerprint": "model-based + local moves + layer pairs + latency fingerprint",
                 "surrogate_fingerprint_random": "control: fingerprint of random cost tables",
                 "surrogate_fingerprint_shuffled": "control: fingerprint of relabelled LUTs",
                 "surrogate_fingerprint_hinge": "fingerprint + budget hinge features",
                 "surrogate_fingerprint_space": "fingerprint model over the whole space",
                 "surrogate_fingerprint_space_mean": "whole space, posterior mean (greedy)",
                 "surrogate_fingerprint_mean": "fingerprint model, posterior mean (greedy)"}


def hv_vs_evaluations(ci_rows: list[dict], target_hv: float):
    """Anytime HV against weight-sharing evaluations: mean over seeds with its 95 % CI band per method.

    Args:
        ci_rows: rows ``{method, n_evals, n_seeds, hv_mean, hv_ci95_low, hv_ci95_high}``
            (:func:`linas_lib.search.experiment.curve_ci`).
        target_hv: the efficiency target, the calibration random runs' median final HV (dashed).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(ci_rows)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for method, group in frame.groupby("method", sort=False):
        line, = ax.plot(group.n_evals, group.hv_mean, label=METHOD_LABELS.get(method, method), lw=1.4)
        ax.fill_between(group.n_evals, group.hv_ci95_low, group.hv_ci95_high, color=line.get_color(), alpha=0.18, lw=0)
    ax.axhline(target_hv, color="k", ls="--", lw=0.8, label="target: calibration random runs' median final HV")
    ax.set_xlabel("weight-sharing evaluations")
    ax.set_ylabel("HV (mean over targets)")
    n_seeds = int(frame.n_seeds.max())
    ax.set_title(f"HV vs evaluations (mean, band = 95% bootstrap CI over {n_seeds} seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def long_budget_hv(curve_rows: list[dict], levels, budget: int, clairvoyant_rows: list[dict] = ()):
    """Anytime HV of the long-budget runs as a share of the experiment's reference, per method.

    Args:
        curve_rows: ``long_budget.csv`` rows ``{method, n_evals, n_seeds, frac_mean, frac_ci95_low,
            frac_ci95_high}`` (:func:`linas_lib.search.experiment.long_budget`).
        levels: the timed shares of the reference (dotted lines).
        budget: the compared runs' evaluations (vertical line).
        clairvoyant_rows: ``clairvoyant.csv`` rows ``{k, hv_frac_reference}``: what knowing every
            accuracy would buy (dashed), if any.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    frame = pd.DataFrame(curve_rows)
    for method, group in frame.groupby("method", sort=False) if len(frame) else ():
        line, = ax.plot(group.n_evals, group.frac_mean, lw=1.4,
                        label=f"{METHOD_LABELS.get(method, method)} ({int(group.n_seeds.max())} seeds)")
        ax.fill_between(group.n_evals, group.frac_ci95_low, group.frac_ci95_high, color=line.get_color(), alpha=0.18,
                        lw=0)
    if len(clairvoyant_rows):
        clair = pd.DataFrame(clairvoyant_rows)
        ax.plot(clair.k, clair.hv_frac_reference, "k--", lw=0.9, label="clairvoyant (every accuracy known)")
    for level in levels:
        ax.axhline(level, color="0.5", ls=":", lw=0.8)
        ax.annotate(f"{100 * level:g} %", (0, level), xycoords=("axes fraction", "data"), fontsize=6, color="0.4",
                    va="bottom", xytext=(2, 0), textcoords="offset points")
    ax.axvline(budget, color="0.3", lw=0.8, label=f"method budget ({budget})")
    ax.set_xlabel("weight-sharing evaluations")
    ax.set_ylabel("HV / reference HV")
    ax.set_title("anytime HV: mean over seeds, band = 95% CI", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def pareto_fronts(front_rows: list[dict], budgets_ms: dict[str, float]):
    """Within-budget Pareto fronts (mIoU vs latency) per target, one panel each, per method.

    Args:
        front_rows: rows ``{method, target, miou, latency_ms}`` (front points of one seed).
        budgets_ms: budget of each target to show (dotted line); panel order follows it.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(front_rows, columns=["method", "target", "miou", "latency_ms"])
    names = list(budgets_ms)
    cols = min(len(names), 4)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    methods = list(dict.fromkeys(frame.method))
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, name in zip(axes.flat, names):
        for method in methods:
            pts = frame[(frame.target == name) & (frame.method == method)].sort_values("latency_ms")
            if len(pts):
                ax.step(pts.latency_ms, pts.miou, where="post", color=colors[method], lw=1.0,
                        marker="o", ms=2.5, label=METHOD_LABELS.get(method, method))
        ax.axvline(budgets_ms[name], color="k", ls=":", lw=0.8)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("predicted latency (ms)", fontsize=7)
        ax.set_ylabel("WS mIoU", fontsize=7)
    handles, labels = next(((h, lab) for h, lab in (a.get_legend_handles_labels() for a in axes.flat) if h), ([], []))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def lut_heatmaps(panels: dict, columns: list[str], annotate: bool = False):
    """One heatmap panel per target (layers x op keys, ms, log colour, own scale), stacked.

    Args:
        panels: ``{title: (n_layers, n_keys) matrix in ms}``, one per target.
        columns: the op keys shared by every panel.
        annotate: write each cell's value (slow to render; the values are in the LUT files).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    n = len(panels)
    fig, axes = plt.subplots(n, 1, figsize=(0.3 * len(columns) + 2.0, 1.15 * n + 1.0), squeeze=False, sharex=True)
    for ax, (title, matrix) in zip(axes[:, 0], panels.items()):
        floor = max(float(matrix[matrix > 0].min(initial=1e-3)), 1e-4)
        image = ax.imshow(np.clip(matrix, floor, None), aspect="auto", cmap="viridis", norm=LogNorm())
        ax.set_yticks(range(len(matrix)), [f"layer {i}" for i in range(len(matrix))], fontsize=6)
        if annotate:
            for (i, j), value in np.ndenumerate(matrix):
                ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=4, color="white")
        fig.colorbar(image, ax=ax, label="ms", pad=0.01)
        ax.set_title(title, fontsize=8)
    axes[-1, 0].set_xticks(range(len(columns)), columns, rotation=90, fontsize=6)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ ranking (notebook 04_ranking)


def _tau_of(rows: list[dict], signal: str, metric: str) -> float:
    """Kendall tau of one (signal, metric) row of ``ranking.csv`` (NaN if absent)."""
    return next((float(r["tau"]) for r in rows if r["signal"] == signal and r["metric"] == metric), float("nan"))


def ranking_ws_vs_standalone(score_rows: list[dict], variants: list[str], ranking_rows: list[dict] = ()):
    """Weight-sharing mIoU against standalone test mIoU (mean over seeds): one panel per variant.

    Args:
        score_rows: ``scores.csv`` rows with ``truth.test_miou`` and ``ws.<variant>``.
        variants: the panels, in order.
        ranking_rows: ``ranking.csv`` rows (each panel's title shows its Kendall tau).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(score_rows)
    cols = min(len(variants), 5)
    rows = -(-len(variants) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.7 * rows), squeeze=False, sharex=True)
    for ax in axes.flat[len(variants):]:
        ax.axis("off")
    for ax, variant in zip(axes.flat, variants):
        ax.scatter(frame["truth.test_miou"], frame[f"ws.{variant}"], s=10, alpha=0.7)
        tau = _tau_of(list(ranking_rows), f"ws.{variant}", "test_miou")
        ax.set_title(f"{variant} (tau {tau:.2f})", fontsize=8)
        ax.set_xlabel("standalone test mIoU (mean over seeds)", fontsize=7)
        ax.set_ylabel("WS mIoU", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def ws_rank_vs_width(score_rows: list[dict], bias_rows: list[dict]):
    """Each WS signal's rank beyond the standalone rank (its ranks' residual on the standalone
    ranks, fractions of the table) against the decoder's mean width: one panel per WS row of
    ``ws_bias.csv``, the mean per width level.

    Args:
        score_rows: ``scores.csv`` rows with ``arch``, ``truth.test_miou`` and the signals' columns.
        bias_rows: ``ws_bias.csv`` rows ``{signal, role, feature, rho, minus_control,
            minus_control_lo, minus_control_hi}``; the ``ws`` rows of the mean width are the
            panels, in order (the points are read
            against the mean test mIoU, the titles' figures against single seeds: see
            :func:`~linas_lib.analysis.ws_shortfall.width_bias`).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    from .analysis.ws_shortfall import mean_width, rank_beyond_truth

    bias_rows = [r for r in bias_rows if r["role"] == "ws" and r.get("feature", "mean_width") == "mean_width"]
    frame = pd.DataFrame(score_rows)
    width = mean_width(frame["arch"].astype(str))
    truth = frame["truth.test_miou"].to_numpy(dtype=float)
    cols = min(len(bias_rows), 3)
    rows = -(-len(bias_rows) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.6 * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(bias_rows):]:
        ax.axis("off")
    for ax, row in zip(axes.flat, bias_rows):
        pred = frame[row["signal"]].to_numpy(dtype=float)
        keep = np.isfinite(pred) & np.isfinite(truth)
        error, kept_width = rank_beyond_truth(pred[keep], truth[keep]), width[keep]
        ax.scatter(kept_width, error, s=8, alpha=0.5)
        levels = np.unique(kept_width)
        ax.plot(levels, [error[kept_width == w].mean() for w in levels], color="C3", lw=1)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"{row['signal']}: partial rho {row['rho']:.2f}, minus control {row['minus_control']:.2f}\n"
                     f"[{row['minus_control_lo']:.2f}, {row['minus_control_hi']:.2f}]", fontsize=7)
        ax.set_xlabel("mean width (%)", fontsize=7)
        ax.set_ylabel("rank beyond standalone rank", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def selection_regret(rows: list[dict], budgets=None):
    """Regret of picking by each signal under a latency budget (``selection.csv`` of 07, or
    ``selection_targets.csv`` with ``budgets`` its :class:`~linas_lib.analysis.selection.Budgets`):
    mIoU points below the best feasible architecture, per budget. Left: each variant's WS mIoU
    (solid) and loss score (dashed, same colour); right: the other signals (symlog axis:
    latency's regret runs an order higher). Both panels draw the controls (``random`` dashed
    black, ``seed_pick`` dotted black); the legend gives each signal's mean regret with its CI.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from .analysis.selection import DECILES, RANDOM, SEED_PICK

    budgets = budgets or DECILES
    controls = [r for r in rows if r["signal"] in (RANDOM, SEED_PICK)]
    ws = [r for r in rows if r["signal"].startswith(("ws.", "ws_loss."))]
    other = [r for r in rows if r not in controls and r not in ws]
    variants = list(dict.fromkeys(r["signal"].split(".", 1)[1] for r in ws))
    x = np.arange(len(budgets.labels))
    # legends below the panels: inside, they covered curves wherever they were put
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), sharex=True, layout="constrained")
    for ax, part in zip(axes, (ws, other)):
        for i, row in enumerate(part + controls):
            name = row["signal"]
            if name in (RANDOM, SEED_PICK):
                style = {"color": "k", "ls": "--" if name == RANDOM else ":"}
            elif part is ws:
                style = {"color": f"C{variants.index(name.split('.', 1)[1]) % 10}",
                         "ls": "--" if name.startswith("ws_loss.") else "-"}
            else:
                style = {"color": f"C{i % 10}"}
            ax.plot(x, [row[f"regret_{label}"] for label in budgets.labels], marker="o", ms=3, lw=1, **style,
                    label=f"{name}: {row['regret_pts']:.2f} [{row['regret_pts_lo']:.2f}, {row['regret_pts_hi']:.2f}]")
        ax.set_xticks(x, [label.removeprefix("q") for label in budgets.labels],
                      rotation=0 if budgets.quantiles is not None else 45, fontsize=7)
        ax.set_xlabel(budgets.axis)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    axes[0].set_ylabel("regret (mIoU points)")
    axes[0].set_title("WS mIoU (solid) and loss score (dashed) per variant", fontsize=8)
    axes[1].set_title("other signals", fontsize=8)
    axes[1].set_yscale("symlog", linthresh=1.0)
    return fig


def ranking_tau(rows: list[dict], metric: str = "test_miou"):
    """Kendall tau with its 95 % bootstrap CI per signal; the seed ceiling as a shaded band.

    Args:
        rows: ``ranking.csv`` rows ``{signal, metric, tau, tau_lo, tau_hi, n}``.
        metric: which ground truth (``test_miou`` or ``test_crack_iou``).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    chosen = [r for r in rows if r["metric"] == metric]
    ceiling = next((r for r in chosen if r["signal"] == "seed_ceiling"), None)
    others = [r for r in chosen if r is not ceiling]
    fig, ax = plt.subplots(figsize=(5.2, 0.32 * len(others) + 1.6))
    if ceiling is not None:
        ax.axvspan(ceiling["tau_lo"], ceiling["tau_hi"], color="C2", alpha=0.2, lw=0, label="seed ceiling (95% CI)")
        ax.axvline(ceiling["tau"], color="C2", lw=1)
    y = np.arange(len(others))[::-1]
    tau = np.array([r["tau"] for r in others], dtype=float)
    err = np.abs(np.array([[r["tau_lo"] for r in others], [r["tau_hi"] for r in others]], dtype=float) - tau)
    ax.errorbar(tau, y, xerr=err, fmt="o", ms=4, capsize=2, color="C0", label="tau (95% CI)")
    ax.set_yticks(y, [f"{r['signal']} (n={int(r['n'])})" for r in others], fontsize=7)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"Kendall tau against standalone {metric} (mean over seeds)")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def ranking_tau_vs_steps(curve_rows: list[dict], ceiling: dict | None = None):
    """Kendall tau of the weight-sharing ranking against supernet weight steps, with its CI band.

    Args:
        curve_rows: ``tau_vs_steps.csv`` rows ``{steps, weights, replica, score, tau, tau_lo, tau_hi}``
            (a colour per ``weights``: ``raw`` one-shot weights, ``ema`` their moving average;
            rows without ``weights`` are raw; solid lines WS mIoU, dashed the WS loss, rows
            without ``score`` are WS mIoU): the replica means with their CI band (WS mIoU) and a
            thin line per training replica where there are several.
        ceiling: the seed-ceiling row of ``ranking.csv`` (dashed line and band), if any.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from .analysis.ranking import curve_rows_for_summary

    labels = {"raw": "raw weights", "ema": "weights averaged (EMA)"}
    styles = {"ws": ("o-", "WS mIoU"), "ws_loss": ("s--", "WS loss")}
    score_of = lambda r: r.get("score", "ws") if isinstance(r.get("score", "ws"), str) else "ws"  # noqa: E731
    headline = curve_rows_for_summary(curve_rows)
    replicas = sorted({str(r.get("replica", 0)) for r in curve_rows} - {"mean"})
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for color, (arm, arm_label) in zip(("C0", "C1"), labels.items()):
        for score, (style, score_label) in styles.items():
            ordered = sorted((r for r in headline if r.get("weights", "raw") == arm and score_of(r) == score),
                             key=lambda r: r["steps"])
            if not ordered:
                continue
            label = f"{score_label}, {arm_label}"
            steps = [r["steps"] for r in ordered]
            if len(replicas) > 1:
                label += f", mean of {len(replicas)} replicas"
            if score == "ws":
                for replica in replicas:
                    own = sorted((r for r in curve_rows if r.get("weights", "raw") == arm and score_of(r) == score
                                  and str(r.get("replica", 0)) == replica), key=lambda r: r["steps"])
                    ax.plot([r["steps"] for r in own], [r["tau"] for r in own], "-", color=color, lw=0.7, alpha=0.6)
                ax.fill_between(steps, [r["tau_lo"] for r in ordered], [r["tau_hi"] for r in ordered], color=color,
                                alpha=0.2, lw=0)
            ax.plot(steps, [r["tau"] for r in ordered], style, color=color, ms=4, label=label)
    if not curve_rows:
        ax.text(0.5, 0.5, "no checkpoints", ha="center", va="center", transform=ax.transAxes)
    if ceiling is not None:
        ax.axhspan(ceiling["tau_lo"], ceiling["tau_hi"], color="C2", alpha=0.15, lw=0)
        ax.axhline(ceiling["tau"], color="C2", ls="--", lw=1, label="seed ceiling")
    ax.set_xlabel("supernet weight steps")
    ax.set_ylabel("Kendall tau (test mIoU)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def ranking_trainings(rows: list[dict]):
    """Kendall tau of each variant training after its one-shot phase and after the search phase.

    Args:
        rows: ``replicas.csv`` rows (:func:`linas_lib.analysis.ranking.replica_rows`); one panel
            per score (WS mIoU, WS loss), a line per training from ``tau_oneshot_end`` to
            ``tau_final`` with CI bars, a colour per variant, a marker per replica.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    own = [r for r in rows if str(r["replica"]) != "mean"]
    scores = list(dict.fromkeys(r["score"] for r in own)) or ["ws"]
    variants = list(dict.fromkeys(r["variant"] for r in own))
    titles = {"ws": "WS mIoU", "ws_loss": "WS loss"}
    fig, axes = plt.subplots(1, len(scores), figsize=(3.6 * len(scores), 3.2), sharey=True, squeeze=False)
    for ax, score in zip(axes[0], scores):
        panel = [x for x in own if x["score"] == score]
        for i, r in enumerate(panel):
            color, marker = f"C{variants.index(r['variant'])}", "os^D"[int(r["replica"]) % 4]
            shift = 0.05 * (i - (len(panel) - 1) / 2)  # side by side, so the CI bars do not overlap
            taus = [r["tau_oneshot_end"], r["tau_final"]]
            errs = [[t - r[f"tau_{p}_lo"] for t, p in zip(taus, ("oneshot_end", "final"))],
                    [r[f"tau_{p}_hi"] - t for t, p in zip(taus, ("oneshot_end", "final"))]]
            ax.errorbar([shift, 1 + shift], taus, yerr=errs, fmt=f"{marker}-", color=color, ms=4, lw=1, capsize=2,
                        label=f"{r['variant']} r{r['replica']}")
        ax.set_xticks([0, 1], ["one-shot end", "after search"])
        ax.set_title(titles.get(score, score), fontsize=9)
        ax.set_xlim(-0.4, 1.4)
    axes[0][0].set_ylabel("Kendall tau (test mIoU)")
    if not own:
        axes[0][0].text(0.5, 0.5, "no trainings", ha="center", va="center", transform=axes[0][0].transAxes)
    else:
        axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def cross_hw_vs_k(mean_rows: list[dict]):
    """Cross-hardware prediction against measured points k, per method: Spearman over all
    held-out devices and per group, and MAPE; mean over devices with its 95 % bootstrap CI.

    Args:
        mean_rows: rows of :func:`linas_lib.analysis.cross_hw.mean_rows`.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(mean_rows).sort_values("k")
    groups = ["all"] + sorted(g for g in frame.group.unique() if g != "all")
    panels = [(g, "spearman", f"Spearman rho ({g} devices)") for g in groups] + [("all", "mape_pct", "MAPE % (all devices)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2))
    for ax, (group, metric, label) in zip(np.atleast_1d(axes), panels):
        part = frame[frame.group == group]
        for method, rows in part.groupby("method", sort=False):
            rows = rows[np.isfinite(rows[f"{metric}_mean"])]
            if rows.empty:
                continue
            err = np.abs(rows[[f"{metric}_ci95_low", f"{metric}_ci95_high"]].to_numpy().T - rows[f"{metric}_mean"].to_numpy())
            ax.errorbar(rows.k, rows[f"{metric}_mean"], yerr=np.nan_to_num(err), marker="o", ms=3, capsize=2, lw=1.2,
                        label=f"{method} (n={int(rows[f'{metric}_n_devices'].max())})")
        ax.set_xlabel("measured architectures k")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=6, loc="best")
    if panels[-1][1] == "mape_pct":
        np.atleast_1d(axes)[-1].set_yscale("log")
    fig.suptitle("Leave-one-device-out latency prediction (mean over held-out devices, 95% bootstrap CI)", fontsize=9)
    fig.tight_layout()
    return fig


def truth_seeds(rows: list[dict]):
    """Each signal's tau change when the truth is the held-out seeds' mean instead of the design
    seeds' (95 % paired CI), beside the change the truths' noise alone predicts.

    Args:
        rows: ``truth_seeds.csv`` rows (:func:`linas_lib.analysis.truth_seeds.truth_seed_rows`).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    signals = [r for r in rows if r["signal"] != "truth" and not str(r["signal"]).startswith("pool.")]
    fig, ax = plt.subplots(figsize=(5.2, 0.3 * len(signals) + 1.6))
    y = np.arange(len(signals))[::-1]
    change = np.array([r["held_minus_design"] for r in signals], dtype=float)
    bounds = np.array([[r["held_minus_design_lo"] for r in signals], [r["held_minus_design_hi"] for r in signals]],
                      dtype=float)
    # a percentile CI need not contain its point estimate: never draw a bar on the wrong side
    spans = np.clip(np.array([change - bounds[0], bounds[1] - change]), 0, None)
    ax.errorbar(change, y, xerr=spans, fmt="o", ms=4, capsize=2, color="C0",
                label="held-out minus design truth (95% CI)")
    expected = np.array([r["held_expected"] - r["tau_design"] for r in signals], dtype=float)
    ax.plot(expected, y, "x", color="C3", label="expected from the truths' noise alone")
    ax.set_yticks(y, [r["signal"] for r in signals], fontsize=7)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("change of Kendall tau (test mIoU truth)")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, frameon=False)
    fig.tight_layout()
    return fig


def scale_projection(rows: list[dict]):
    """07's scale study: each goal's projected tau against the seeds averaged (log axis), the goal
    as a dashed line, and where the seed extension's added seeds measured a point, that point
    (dot) beside the model's prediction for it (cross).

    Args:
        rows: ``scale.csv`` rows (:func:`linas_lib.analysis.scale.study`).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from .analysis.scale import SEED_COUNTS

    goals = list(dict.fromkeys(r["goal"] for r in rows))
    fig, axes = plt.subplots(1, len(goals), figsize=(3.4 * len(goals), 3.2), squeeze=False, sharey=True)
    for ax, goal in zip(axes[0], goals):
        mine = [r for r in rows if r["goal"] == goal]
        ax.set_title(goal, fontsize=9)
        ax.axhline(mine[0]["goal_tau"], color="k", ls="--", lw=0.8)
        mine = [r for r in mine if any(_finite(r[f"tau_m{m}"]) for m in SEED_COUNTS)]
        if not mine:  # seeds that do not agree at all project nowhere
            ax.text(0.5, 0.5, "no projection:\nthe seeds do not agree", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
            continue
        for k, r in enumerate(mine):
            color = f"C{k % 10}"
            ax.plot(SEED_COUNTS, [r[f"tau_m{m}"] for m in SEED_COUNTS], "-", lw=1, color=color, label=r["signal"])
            if _finite(r.get("tau_measured")):  # on the extension's added seeds, beside the model's prediction
                ax.plot([r["measured_m"]], [r["tau_measured"]], "o", ms=4, color=color)
                ax.plot([r["measured_m"]], [r["tau_projected"]], "x", ms=5, color=color)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("seeds averaged (m)")
        ax.legend(fontsize=5, loc="lower right", frameon=False)
    axes[0][0].set_ylabel("Kendall tau (lines projected;\ndots held-out seeds, crosses predicted)")
    fig.tight_layout()
    return fig


def final_arms(choice_rows: list[dict], control_rows: list[dict], loss_rows: list[dict] | None = None):
    """05's final networks per target: the final choice's and its WS-only control's test mIoU
    (mean over seeds, bars one seed SD), and the WS-loss arm's where given, beside the best table
    architecture within the budget.

    Args:
        choice_rows: ``final_networks.csv`` rows (:func:`linas_lib.analysis.final.final_rows`).
        control_rows: ``final_networks_ws.csv`` rows, the same targets.
        loss_rows: ``final_networks_ws_loss.csv`` rows (None: no WS-loss arm).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    control = {r["target"]: r for r in control_rows}
    targets = [r["target"] for r in choice_rows if r["target"] in control]
    x = np.arange(len(targets))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(targets) + 1.5), 3.4))
    arms = [("final choice", {r["target"]: r for r in choice_rows}, "o"), ("WS-only control", control, "s")]
    if loss_rows:
        arms.append(("WS-loss arm", {r["target"]: r for r in loss_rows}, "^"))
    for k, (label, rows, marker) in enumerate(arms):
        shift = 0.3 * (k - (len(arms) - 1) / 2) / max(len(arms) - 1, 1)
        mean = [100 * float(rows.get(t, {}).get("chosen_test_miou_mean", math.nan)) for t in targets]
        sd = [100 * float(rows.get(t, {}).get("chosen_test_miou_std", math.nan)) for t in targets]
        ax.errorbar(x + shift, mean, yerr=sd, fmt=marker, ms=4, capsize=2, lw=0.8, label=label)
    best = [100 * float(control[t].get("best_bench_test_miou_mean", math.nan)) for t in targets]
    ax.plot(x, best, "_", ms=14, mew=1.5, color="k", label="best table architecture within the budget")
    ax.set_xticks(x, targets, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("test mIoU (points; bars: seed SD)")
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def choice_rules(rows: list[dict]):
    """09's final networks per target under each choice rule: the gap to the best table
    architecture within the budget (mIoU points, bars its 95 % CI), the goal's 1-point mark.

    Args:
        rows: ``choice_rules.csv`` rows (``rule`` and :func:`linas_lib.analysis.final.final_rows`
            fields); a pending pick (no gap) is left out.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    rules = list(dict.fromkeys(r["rule"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    x = np.arange(len(targets))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(targets) + 1.5), 3.4))
    for k, (rule, marker) in enumerate(zip(rules, "os^dv")):
        shift = 0.3 * (k - (len(rules) - 1) / 2) / max(len(rules) - 1, 1)
        mine = {r["target"]: r for r in rows if r["rule"] == rule and _finite(r.get("miou_gap_to_bench_pts"))}
        at = [i for i, t in enumerate(targets) if t in mine]
        gap = np.array([float(mine[targets[i]]["miou_gap_to_bench_pts"]) for i in at])
        low = np.array([float(mine[targets[i]].get("miou_gap_ci95_low_pts", math.nan)) for i in at])
        high = np.array([float(mine[targets[i]].get("miou_gap_ci95_high_pts", math.nan)) for i in at])
        ax.errorbar(x[at] + shift, gap, yerr=[gap - low, high - gap] if len(at) else None, fmt=marker, ms=4,
                    capsize=2, lw=0.8, label=rule)
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="goal: 1 point")
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.set_xticks(x, targets, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("gap to the best table arch (mIoU pts)")
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def choice_truth(target_rows: list[dict], contrast_rows: list[dict]):
    """09's studies ``choice_truth`` and ``choice_standalone``: (left) per target, each rule's value
    as a gap to the best table architecture within the budget (mIoU points; the best candidate's,
    or the reference arms', for the room there was),
    the goal's 1-point mark; (right) each registered contrast, the mean over the targets with its
    95 % bootstrap CI, and the +/-0.25-point band of equivalence.

    Args:
        target_rows: ``choice_truth_targets.csv`` or ``choice_standalone_targets.csv`` rows
            (``gap_<rule>_pts``).
        contrast_rows: ``choice_truth_contrasts.csv`` rows.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
    targets = [r["target"] for r in target_rows]
    x = np.arange(len(targets))
    columns = [k for k in (target_rows[0] if target_rows else {}) if k.startswith("gap_") and k.endswith("_pts")]
    for k, (column, marker) in enumerate(zip(columns, "os^dvx")):
        shift = 0.4 * (k - (len(columns) - 1) / 2) / max(len(columns) - 1, 1)
        left.plot(x + shift, [float(r[column]) for r in target_rows], marker, ms=4,
                  label=column[len("gap_"):-len("_pts")].replace("_", " "))
    left.axhline(1.0, color="k", lw=0.8, ls="--", label="goal: 1 point")
    left.axhline(0.0, color="0.6", lw=0.5)
    left.set_xticks(x, targets, rotation=45, ha="right", fontsize=7)
    left.set_ylabel("gap to the best table arch (mIoU pts)")
    left.legend(fontsize=6, frameon=False, ncol=2)
    names = [f"{r['arm']} - {r['control']}" for r in contrast_rows]
    y = np.arange(len(names))
    diff = np.array([float(r["diff_pts"]) for r in contrast_rows])
    low = np.array([float(r["diff_ci95_low_pts"]) for r in contrast_rows])
    high = np.array([float(r["diff_ci95_high_pts"]) for r in contrast_rows])
    right.axvspan(-0.25, 0.25, color="0.9", label="equivalence: +/-0.25")
    right.errorbar(diff, y, xerr=[diff - low, high - diff] if len(y) else None, fmt="o", ms=4, capsize=3, lw=0.9)
    right.axvline(0.0, color="0.5", lw=0.6)
    right.set_yticks(y, names, fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("value difference (test mIoU pts, mean over targets)")
    right.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fingerprint_probe(effect_rows: list[dict], step_rows: list[dict], weight_rows: list[dict]):
    """08's probe of the fingerprint model: (left) the share of Thompson steps whose pick lies in
    the watched target's box, per model on each arm's replayed states; (middle) per target, the
    fingerprint model's prediction minus the pairs model's on the target's best recorded
    architectures, on each arm's first k evaluations (the middle k); (right) the fingerprint
    model's posterior-mean weight per target's log latency (the largest k). Every interval is a
    t 95 % CI over seeds."""
    import matplotlib.pyplot as plt

    from .stats import mean_t_ci

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    shares = [r for r in step_rows if r["quantity"] == "in_box" and "_minus_" not in r["model"]]
    models = list(dict.fromkeys(r["model"] for r in shares))
    for j, data in enumerate(dict.fromkeys(r["data"] for r in shares)):
        rows = {r["model"]: r for r in shares if r["data"] == data}
        _ci_points(axes[0], np.arange(len(models)) + (j - 0.5) * 0.2, [rows[m] for m in models], f"{data} arm's states")
    axes[0].set_xticks(np.arange(len(models)), models, fontsize=8)
    axes[0].set_ylabel("share of steps picking inside the box")
    level = [r for r in effect_rows if r["metric"] == "bias_pts"]
    ks = sorted({int(r["k"]) for r in level})
    k_mid = ks[len(ks) // 2]
    targets = list(dict.fromkeys(r["target"] for r in level))
    for j, data in enumerate(dict.fromkeys(r["data"] for r in level)):
        rows = {r["target"]: r for r in level if r["data"] == data and int(r["k"]) == k_mid}
        _ci_points(axes[1], np.arange(len(targets)) + (j - 0.5) * 0.2, [rows[t] for t in targets], f"{data} arm's data")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_xticks(np.arange(len(targets)), targets, rotation=45, ha="right", fontsize=8)
    axes[1].set_ylabel(f"fingerprint - pairs prediction of the best, k = {k_mid} (pts)")
    k_last = max(int(r["k"]) for r in weight_rows)
    names = list(dict.fromkeys(r["target"] for r in weight_rows))
    rows = []
    for t in names:
        values = [r["weight_pts"] for r in weight_rows if r["target"] == t and int(r["k"]) == k_last]
        low, high = mean_t_ci(values)
        rows.append({"mean": float(np.mean(values)), "ci95_low": low, "ci95_high": high})
    _ci_points(axes[2], np.arange(len(names)), rows, None)
    axes[2].axhline(0, color="grey", lw=0.8)
    axes[2].set_xticks(np.arange(len(names)), names, rotation=45, ha="right", fontsize=8)
    axes[2].set_ylabel(f"fingerprint weight, pts per SD of log latency (k = {k_last})")
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _ci_points(ax, x, rows: list[dict], label) -> None:
    """Means with their ``ci95_low``/``ci95_high`` as error bars."""
    mean = np.array([r["mean"] for r in rows])
    err = np.array([[r["mean"] - r["ci95_low"] for r in rows], [r["ci95_high"] - r["mean"] for r in rows]])
    ax.errorbar(x, mean, yerr=err, fmt="o", ms=4, capsize=2, label=label)
