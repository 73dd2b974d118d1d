"""Study figures built straight from stored trials (no frames), for the dashboard's study page.

Both stay small at thousands of trials: one bar per method, and only each method's best
`per_method` learning curves.
"""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.colors import qualitative

from drltune.record import epochs, trial_method
from drltune.search.objective import primary

LAYOUT = dict(template="plotly_white", height=420, margin=dict(l=70, r=30, t=80, b=60))


def _score(trial: FrozenTrial) -> float | None:
    """A complete trial's value, else its best intermediate value so far."""
    if trial.state == TrialState.COMPLETE:
        return primary(trial)
    return max(trial.intermediate_values.values()) if trial.intermediate_values else None


def best_by_method(trials: Sequence[FrozenTrial]) -> dict[str, FrozenTrial]:
    """Each method's best trial: the best complete one, else (labelled by its state) the best so
    far."""
    best: dict[str, FrozenTrial] = {}
    for trial in trials:
        if _score(trial) is None or trial.state not in (
            TrialState.COMPLETE,
            TrialState.PRUNED,
            TrialState.RUNNING,
        ):
            continue
        method, rank = trial_method(trial), (trial.state == TrialState.COMPLETE, _score(trial))
        current = best.get(method)
        if current is None or rank > (current.state == TrialState.COMPLETE, _score(current)):
            best[method] = trial
    return dict(sorted(best.items()))


def best_per_method_figure(trials: Sequence[FrozenTrial]) -> go.Figure | None:
    best = best_by_method(trials)
    if not best:
        return None
    names = list(best)
    complete = [best[m].state == TrialState.COMPLETE for m in names]
    text = [
        f"#{best[m].number} {_score(best[m]):.4f}"
        + ("" if ok else f" ({best[m].state.name.lower()}, {len(best[m].intermediate_values)} ep)")
        for m, ok in zip(names, complete)
    ]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[_score(best[m]) for m in names],
            text=text,
            textposition="outside",
            marker=dict(color=["#1f77b4" if ok else "#bbbbbb" for ok in complete]),
            hovertemplate="%{x}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Best val_acc per method<br><sub>grey: no complete trial, its best so far</sub>",
        xaxis_title="method",
        yaxis_title="best val_acc",
        **LAYOUT,
    )
    return fig


def method_curves_figure(trials: Sequence[FrozenTrial], per_method: int = 3) -> go.Figure | None:
    """The best `per_method` trials of each method: val_acc by epoch, re-inits as red crosses."""
    by_method: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        if _score(trial) is not None and trial.state != TrialState.FAIL:
            by_method.setdefault(trial_method(trial), []).append(trial)
    if not by_method:
        return None
    palette = qualitative.D3
    fig, reinit_shown = go.Figure(), False
    for i, (method, group) in enumerate(sorted(by_method.items())):
        group.sort(key=lambda t: (t.state == TrialState.COMPLETE, _score(t)), reverse=True)
        for j, trial in enumerate(group[:per_method]):
            curve = epochs(trial)
            fig.add_scatter(
                x=[r["epoch"] for r in curve],
                y=[r["val_acc"] for r in curve],
                mode="lines",
                name=method,
                legendgroup=method,
                showlegend=j == 0,
                line=dict(
                    color=palette[i % len(palette)],
                    dash="solid" if trial.state == TrialState.COMPLETE else "dash",
                ),
                hovertemplate=f"trial {trial.number} ({trial.state.name.lower()})"
                "<br>epoch %{x}<br>val_acc %{y:.4f}<extra></extra>",
            )
            marks = [r for r in curve if r.get("reinit")]
            if marks:
                fig.add_scatter(
                    x=[r["epoch"] for r in marks],
                    y=[r["val_acc"] for r in marks],
                    mode="markers",
                    name="re-init",
                    legendgroup="re-init",
                    showlegend=not reinit_shown,
                    marker=dict(symbol="x", size=10, color="#d62728"),
                    hovertemplate=(
                        f"trial {trial.number}: re-init after epoch %{{x}}<extra></extra>"
                    ),
                )
                reinit_shown = True
    fig.update_layout(
        title=f"Learning curves of each method's best {per_method}<br>"
        "<sub>dashed: pruned or running; red x: DR re-init</sub>",
        xaxis_title="epoch (0-based)",
        yaxis_title="val_acc",
        **LAYOUT,
    )
    last = max((r["epoch"] for t in trials for r in epochs(t)), default=0)
    fig.update_xaxes(tickformat="d", rangemode="tozero", dtick=1 if last <= 20 else None)
    return fig
