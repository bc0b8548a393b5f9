"""The figures Stratos draws (matplotlib, Agg backend): the planner's Pareto frontier (``stratos plan --plot`` and
the run report), and the run report's training-loss curve and accuracy bars.

Each function writes one PNG and closes its figure. matplotlib is imported inside the functions, so importing
this module costs nothing until a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MISSING = "—"
"""Label of a bar whose value is missing (the report's tables show missing values the same way)."""
#: Marker of each single-objective baseline in :func:`plot_frontier`; a plan document's other baselines are not drawn.
BASELINE_MARKERS: Mapping[str, str] = {"accuracy_first": "^", "cost_first": "s", "latency_first": "D"}


def plot_frontier(doc: Mapping[str, Any], path: str | Path) -> None:
    """Draw a frontier document's plans: total cost (training + serving, USD, x; log scale when it spans more than
    20x) against p50 latency (ms, y), colour = expected accuracy (fraction); the chosen plan is a star, each
    baseline its :data:`BASELINE_MARKERS` marker. Writes a PNG to ``path``.

    Args:
        doc: the planner's frontier document (``stratos plan --json``): ``task_id``, ``frontier`` (at least one
            plan), ``plan`` (the chosen one) and ``baselines`` (name -> plan, names from :data:`BASELINE_MARKERS`);
            each plan has ``total_cost_usd``, ``p50_latency_ms``, ``expected_accuracy`` and ``score``.
        path: the PNG to write.

    Raises:
        KeyError: a plan lacks one of those fields, or a baseline name has no marker.
        OSError: ``path`` cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in a test
    import matplotlib.pyplot as plt

    frontier = doc["frontier"]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    xs = [p["total_cost_usd"] for p in frontier]
    ys = [p["p50_latency_ms"] for p in frontier]
    accs = [p["expected_accuracy"] for p in frontier]
    marked = [doc["plan"], *doc["baselines"].values()]
    lo = min([*accs, *(p["expected_accuracy"] for p in marked)])
    hi = max([*accs, *(p["expected_accuracy"] for p in marked)])
    scatter = ax.scatter(xs, ys, c=accs, cmap="viridis", vmin=lo, vmax=hi, s=28, label="Pareto frontier")
    fig.colorbar(scatter, ax=ax, label="expected accuracy")
    for name, p in doc["baselines"].items():
        ax.scatter(
            [p["total_cost_usd"]],
            [p["p50_latency_ms"]],
            marker=BASELINE_MARKERS[name],
            s=110,
            facecolors="none",
            edgecolors="crimson",
            linewidths=1.6,
            label=f"{name} (score {p['score']:.3f})",
        )
    chosen = doc["plan"]
    ax.scatter(
        [chosen["total_cost_usd"]],
        [chosen["p50_latency_ms"]],
        marker="*",
        s=320,
        c=[chosen["expected_accuracy"]],
        cmap="viridis",
        vmin=lo,
        vmax=hi,
        edgecolors="black",
        linewidths=1.2,
        label=f"chosen (score {chosen['score']:.3f})",
    )
    all_x = [*xs, *(p["total_cost_usd"] for p in marked)]
    if max(all_x) / max(min(all_x), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("total cost: training + serving, USD")
    ax.set_ylabel("p50 latency, ms")
    ax.set_title(f"{doc['task_id']}: Pareto frontier ({len(frontier)} plans) and baselines")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_loss(points: Sequence[tuple[float, float]], path: Path, title: str, *, run_mean: float | None = None) -> bool:
    """Training loss (y; log scale when it spans more than 20x) against optimizer step (x), with the run's mean
    loss as a dashed line. Writes a PNG to ``path``.

    Args:
        points: ``(optimizer step, training loss)`` pairs, any order.
        path: the PNG to write.
        title: the figure title.
        run_mean: the mean training loss over the run (``metrics["final_loss"]``), or ``None`` for no line.

    Returns:
        False (nothing written) without points, else True.

    Raises:
        OSError: ``path`` cannot be written.
    """
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in a test
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    steps, losses = zip(*sorted(points), strict=True)
    ax.plot(steps, losses, marker="o", markersize=3, linewidth=1.5, color="tab:blue", label="training loss at step")
    if run_mean is not None:
        ax.axhline(run_mean, color="dimgray", linestyle="--", linewidth=1, label=f"mean over the run {run_mean:.4f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (mean over each logging interval)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if min(losses) > 0 and max(losses) / min(losses) > 20:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))  # 0.2, 1, 5, not 2x10^-1
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_accuracy(
    rows: Sequence[tuple[str, float | None, float | None]],
    path: Path,
    title: str,
    *,
    min_accuracy: float | None = None,
    expected_accuracy: float | None = None,
) -> bool:
    """Grouped bars: exact accuracy and partial credit per model. Writes a PNG to ``path``.

    Args:
        rows: ``(model label, exact accuracy, partial credit)`` per model, fractions 0..1; a missing value
            (``None``) gets no bar and a :data:`MISSING` label.
        path: the PNG to write.
        title: the figure title.
        min_accuracy: the spec's ``min_accuracy`` (fraction), drawn dashed; ``None`` for no line.
        expected_accuracy: the planner's expected accuracy (fraction), drawn dotted; ``None`` for no line.

    Returns:
        False (nothing written) when every value is missing, else True.

    Raises:
        OSError: ``path`` cannot be written.
    """
    if all(a is None and p is None for _, a, p in rows):
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in a test
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    width = 0.38
    series = ((-width / 2, "exact accuracy", "tab:blue"), (width / 2, "partial credit", "tab:orange"))
    for index, (offset, label, colour) in enumerate(series):
        labelled = False
        for x, row in enumerate(rows):
            value = (row[1], row[2])[index]
            if value is None:
                ax.text(x + offset, 0.01, MISSING, ha="center", va="bottom", fontsize=10)
                continue
            ax.bar(x + offset, value, width, color=colour, label=None if labelled else label)
            labelled = True
            ax.text(x + offset, value + 0.01, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    if min_accuracy is not None:
        ax.axhline(
            min_accuracy, color="crimson", linestyle="--", linewidth=1.2, label=f"spec min_accuracy {min_accuracy:.2f}"
        )
    if expected_accuracy is not None:
        ax.axhline(
            expected_accuracy,
            color="dimgray",
            linestyle=":",
            linewidth=1.2,
            label=f"planner expected {expected_accuracy:.3f}",
        )
    ax.set_xticks(range(len(rows)), [r[0] + ("\n(not evaluated)" if r[1] is r[2] is None else "") for r in rows])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of held-out examples")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_predicted_vs_actual(
    panels: Sequence[tuple[str, float | None, float | None, float | None]], path: Path, title: str
) -> bool:
    """One small panel per figure: the prediction as a bar with its band as an error bar, the measurement as a bar
    beside it (a missing measurement is labelled :data:`MISSING`). Writes a PNG to ``path``.

    Args:
        panels: ``(label with unit, predicted, band half-width, actual)`` per figure, in the figure's unit; a
            panel without a prediction is left out.
        path: the PNG to write.
        title: the figure title.

    Returns:
        False (nothing written) when no panel has a prediction, else True.

    Raises:
        OSError: ``path`` cannot be written.
    """
    drawn = [p for p in panels if p[1] is not None]
    if not drawn:
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in a test
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(drawn), figsize=(2.6 * len(drawn) + 0.6, 3.6), dpi=120, squeeze=False)
    for ax, (label, predicted, band, actual) in zip(axes[0], drawn, strict=True):
        assert predicted is not None
        ax.bar(0, predicted, 0.6, color="tab:gray", yerr=band, capsize=6, label="predicted ± band")
        top = predicted + (band or 0.0)
        if actual is None:
            ax.text(1, 0, MISSING, ha="center", va="bottom", fontsize=12)
        else:
            ax.bar(1, actual, 0.6, color="tab:blue", label="measured")
            top = max(top, actual)
        for x, value in ((0, predicted), (1, actual)):
            if value is not None:
                ax.text(x, value, f"{value:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks([0, 1], ["predicted", "measured"])
        ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)
        ax.set_title(label, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
