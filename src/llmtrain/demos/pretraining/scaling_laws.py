"""Demo of the scaling-laws chapter: how three laws would spend one compute budget."""

from __future__ import annotations

import numpy as np

from ...pretraining import BESIROGLU_LAW, HOFFMANN_LAW, compute_optimal, kaplan_allocation
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["scaling_laws_demo"]

_LAWS = {"Hoffmann": HOFFMANN_LAW, "Besiroglu": BESIROGLU_LAW}
_COLORS = {"Hoffmann": "C0", "Besiroglu": "C2", "Kaplan": "C3"}
_N_RANGE = (1e6, 1e14)


def _choices(*, C):
    """Each law's compute-optimal N and D for a budget of C FLOPs (closed forms only)."""
    out = {name: compute_optimal(law, C) for name, law in _LAWS.items()}
    out["Kaplan"] = kaplan_allocation(C)
    return out


def _draw(fig, choices, *, C):
    plane, along = fig.subplots(1, 2)
    budgets = np.geomspace(1e17, 1e27, 60)
    for name, law in _LAWS.items():
        frontier = [compute_optimal(law, c) for c in budgets]
        plane.plot([a.N for a in frontier], [a.D for a in frontier], color=_COLORS[name], lw=1)
    kaplan = [kaplan_allocation(c) for c in budgets]
    plane.plot([a.N for a in kaplan], [a.D for a in kaplan], color=_COLORS["Kaplan"], lw=1)
    n = np.geomspace(*_N_RANGE, 3)
    plane.plot(n, 20 * n, color="0.6", ls=":", lw=1)
    plane.text(3e6, 20 * 3e6 * 2, "D = 20 N", color="0.5", fontsize=8, rotation=0)
    for ax in (plane, along):
        ax.set_xscale("log")
        ax.set_xlim(*_N_RANGE)
        ax.grid(alpha=0.3, which="major")
        ax.set_xlabel("parameters N")
    plane.set_yscale("log")
    plane.set_ylim(1e7, 1e16)
    plane.set_ylabel("training tokens D")
    along.set_ylim(1.8, 5.0)
    along.set_ylabel("predicted loss L(N, C / 6N)")
    (budget_line,) = plane.plot([], [], color="k", lw=1.2, label="budget C = 6ND")
    marks = {
        name: plane.plot([], [], "o", color=_COLORS[name], ms=7, label=name)[0]
        for name in ("Hoffmann", "Besiroglu", "Kaplan")
    }
    plane.legend(loc="upper left", fontsize=8)
    curves = {name: along.plot([], [], color=_COLORS[name], lw=1.5)[0] for name in _LAWS}
    optima = {name: along.plot([], [], "o", color=_COLORS[name], ms=6)[0] for name in _LAWS}
    kaplan_line = along.axvline(1e9, color=_COLORS["Kaplan"], ls="--", lw=1)
    title = moving_title(plane)
    rows = along.text(
        0.97,
        0.97,
        "",
        transform=along.transAxes,
        ha="right",
        va="top",
        family="monospace",
        fontsize=8,
    )
    background = FrozenBackground(fig, [plane, along])
    dynamic = [
        budget_line,
        *marks.values(),
        *curves.values(),
        *optima.values(),
        kaplan_line,
        title,
        rows,
    ]
    state = {"first": True}

    def update(choices, *, C):
        if state["first"]:
            state["first"] = False
        elif background.image is None:
            background.capture(dynamic)
        Ns = np.geomspace(*_N_RANGE, 200)
        budget_line.set_data(Ns, C / (6 * Ns))
        for name, mark in marks.items():
            mark.set_data([choices[name].N], [choices[name].D])
        for name, law in _LAWS.items():
            curves[name].set_data(Ns, law.loss(Ns, C / (6 * Ns)))
            optima[name].set_data([choices[name].N], [choices[name].loss])
        kaplan_line.set_xdata([choices["Kaplan"].N] * 2)
        title.set_text(f"compute budget C = {C:.2e} FLOPs")
        rows.set_text(
            "\n".join(
                f"{name:<9} N={a.N:8.2e} D={a.D:8.2e} D/N={a.D / a.N:5.1f}"
                for name, a in choices.items()
            )
        )

    update(choices, C=C)
    return update


@demo_factory
def scaling_laws_demo() -> Demo:
    """The compute-optimal split of a budget of C FLOPs by Hoffmann et al.'s law, by
    Besiroglu et al.'s replication of it and by Kaplan et al.'s rule, in closed form: the
    three choices on the (N, D) plane with each law's frontier, and the loss the two
    parametric laws predict along the budget."""
    return Demo(
        _choices,
        _draw,
        [Slider("C", 1e18, 1e26, 5.76e23, scale="log", label="compute budget C (FLOPs)")],
        figsize=(11.0, 4.2),
        alt=(
            "Left: parameters N against training tokens D on log axes, with the compute-optimal "
            "frontier of Hoffmann et al.'s law, of Besiroglu et al.'s refit and of Kaplan et "
            "al.'s rule, the line D = 20N, the budget line C = 6ND and a dot for each law's "
            "choice on it. Right: the loss the two parametric laws predict along the budget "
            "line against N, with their minima, and Kaplan's N as a dashed line. The slider "
            "sets the budget C."
        ),
    )
