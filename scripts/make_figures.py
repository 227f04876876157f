"""Draw the book's static figures into img/. Run from the repository root:

    python scripts/make_figures.py

Every figure in img/ comes from a function here; tests/test_figures.py checks that the files
in the repository are exactly what this script draws today.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

IMG = Path(__file__).resolve().parents[1] / "img"

# Fixed ids and no date, so that the same code writes byte-identical SVG files.
matplotlib.rcParams["svg.hashsalt"] = "llm-training-fundamentals"
SVG_METADATA = {"Date": None, "Creator": None}


def training_pipeline() -> Figure:
    """Pretraining -> supervised fine-tuning -> preference tuning, with each stage's data."""
    fig = Figure(figsize=(10, 3.4))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 3.4)
    ax.axis("off")
    stages = [
        (
            "Pretraining",
            "next-token prediction\non raw text",
            "trillions of tokens\nof unlabeled text",
            "base model",
        ),
        (
            "Supervised\nfine-tuning",
            "imitate written\ndemonstrations",
            "10⁴–10⁵ (prompt, response)\ndemonstrations",
            "SFT model",
        ),
        (
            "Preference\ntuning",
            "prefer the better of\ntwo responses (RLHF, DPO)",
            "10⁴–10⁶ human or AI\npreference comparisons",
            "assistant model",
        ),
    ]
    colours = ["#dbe9f6", "#e3f1dc", "#fbe5d6"]
    for i, (name, objective, data, output) in enumerate(stages):
        x = 0.35 + 3.3 * i
        ax.add_patch(
            FancyBboxPatch(
                (x, 0.9),
                2.6,
                1.35,
                boxstyle="round,pad=0.05",
                facecolor=colours[i],
                edgecolor="#333333",
            )
        )
        ax.text(x + 1.3, 1.85, name, ha="center", va="center", fontsize=12, weight="bold")
        ax.text(x + 1.3, 1.2, objective, ha="center", va="center", fontsize=9)
        ax.text(x + 1.3, 2.95, data, ha="center", va="center", fontsize=8.5, color="#444444")
        ax.add_patch(
            FancyArrowPatch(
                (x + 1.3, 2.62),
                (x + 1.3, 2.3),
                arrowstyle="-|>",
                mutation_scale=12,
                color="#666666",
            )
        )
        ax.text(x + 1.3, 0.5, output, ha="center", va="center", fontsize=9.5, style="italic")
        if i < len(stages) - 1:
            ax.add_patch(
                FancyArrowPatch(
                    (x + 2.68, 1.57),
                    (x + 3.27, 1.57),
                    arrowstyle="-|>",
                    mutation_scale=16,
                    color="#333333",
                    linewidth=1.5,
                )
            )
    return fig


FIGURES = {"training-pipeline.svg": training_pipeline}


def write_all(directory: Path = IMG) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        path = directory / name
        draw().savefig(path, metadata=SVG_METADATA)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else IMG):
        print(path)
