"""One self-contained HTML page per study: plotly.js is inlined once, so it opens offline."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from drltune.errors import DrltuneError
from drltune.explore.summary import (
    BEST_PER_METHOD_NOTE,
    TABLE_COLUMNS,
    Summary,
    counts_line,
    pareto_table,
)
from drltune.search.storage import database_file

if TYPE_CHECKING:
    from drltune.methods import Method

ACC = "validation accuracy"
LAYOUT = dict(
    template="plotly_white",
    height=440,
    margin=dict(l=70, r=30, t=60, b=60),
    font=dict(size=13),
    legend=dict(title_text=""),
)


def default_report_path(study: str, storage: str) -> Path:
    """`studies/<study>/report.html` beside a SQLite file's folder, else under ./studies."""
    db = database_file(storage)
    base = db.parent if db is not None else Path("studies")
    if base.is_absolute() and base.is_relative_to(
        Path.cwd()
    ):  # shown relative to the current directory
        base = base.relative_to(Path.cwd())
    return base / re.sub(r"[^A-Za-z0-9._-]+", "_", study) / "report.html"


def _acc_range(values: pd.Series, floor: bool = False) -> list[float]:
    """Accuracy axis around the data, inside [0, 1] (plotly's default for one point is -1..1)."""
    values = values.dropna().astype(float)
    return [0.0 if floor else max(0.0, values.min() - 0.05), min(1.0, values.max() + 0.05)]


def _integer_axis(values: pd.Series) -> dict:
    """Trial numbers and epochs are integers: no 0.5 ticks, a half step of room at both ends."""
    low, high = int(values.min()), int(values.max())
    return dict(
        range=[low - 0.5, high + 0.5], dtick=1 if high - low <= 20 else None, tickformat="d"
    )


def _colours(methods: list[str]) -> dict[str, str]:
    palette = qualitative.D3
    return {m: palette[i % len(palette)] for i, m in enumerate(sorted(set(methods)))}


def history_figure(trials: pd.DataFrame, colours: dict[str, str]) -> go.Figure | None:
    """Each complete trial's value by trial number, pruned ones at their best before the stop, best
    so far."""
    scored = trials[trials["value"].notna() | trials["best_val_acc"].notna()]
    if scored.empty:
        return None
    fig = go.Figure()
    for method, group in scored[scored["state"] == "COMPLETE"].groupby("method"):
        fig.add_scatter(
            x=group["number"],
            y=group["value"],
            mode="markers",
            name=f"{method} (complete)",
            marker=dict(color=colours[method], size=10),
            customdata=group[["fusion"]],
            hovertemplate=(
                "trial %{x}<br>val_acc %{y:.4f}<br>fusion %{customdata[0]}<extra></extra>"
            ),
        )
    other = scored[(scored["state"] != "COMPLETE") & scored["best_val_acc"].notna()]
    if not other.empty:
        fig.add_scatter(
            x=other["number"],
            y=other["best_val_acc"],
            mode="markers",
            name="pruned / running (so far)",
            marker=dict(color="grey", symbol="x", size=9),
            customdata=other[["state", "method"]],
            hovertemplate="trial %{x} %{customdata[0]}<br>%{customdata[1]}<br>best so far %{y:.4f}"
            "<extra></extra>",
        )
    complete = trials[trials["state"] == "COMPLETE"].sort_values("number")
    if not complete.empty:
        fig.add_scatter(
            x=complete["number"],
            y=complete["value"].cummax(),
            mode="lines",
            name="best so far",
            line=dict(color="black", shape="hv"),
        )
    fig.update_layout(
        title="Optimisation history",
        xaxis_title="trial number",
        yaxis_title=f"best {ACC}",
        **LAYOUT,
    )
    fig.update_xaxes(**_integer_axis(trials["number"]))
    fig.update_yaxes(range=_acc_range(pd.concat([scored["best_val_acc"], scored["value"]])))
    return fig


def curves_figure(history: pd.DataFrame, colours: dict[str, str]) -> go.Figure | None:
    """Per-epoch val_acc of every trial; pruned trials dashed and ending in a cross where they were
    stopped."""
    if history.empty:
        return None
    fig, shown = go.Figure(), set()
    dash = {"COMPLETE": "solid", "PRUNED": "dash", "RUNNING": "dot", "FAIL": "dot"}
    for number, group in history.sort_values(["number", "epoch"]).groupby("number"):
        state, method = group["state"].iloc[0], group["method"].iloc[0]
        end = "x" if state == "PRUNED" else "circle"
        fig.add_scatter(
            x=group["epoch"],
            y=group["val_acc"],
            mode="lines+markers",
            legendgroup=method,
            name=method,
            showlegend=method not in shown,
            opacity=0.85,
            line=dict(color=colours[method], dash=dash.get(state, "solid"), width=1.5),
            marker=dict(size=[4] * (len(group) - 1) + [9], symbol=[end] * len(group)),
            hovertemplate=f"trial {number} ({state.lower()}, {method})<br>epoch %{{x}}"
            "<br>val_acc %{y:.4f}<extra></extra>",
        )
        shown.add(method)
        marks = (
            group[group["reinit"].fillna(False).astype(bool)]
            if "reinit" in group
            else group.iloc[:0]
        )
        if not marks.empty:
            fig.add_scatter(
                x=marks["epoch"],
                y=marks["val_acc"],
                mode="markers",
                name="DR re-init",
                legendgroup="reinit",
                showlegend="reinit" not in shown,
                marker=dict(
                    symbol="triangle-down",
                    size=11,
                    color="#d62728",
                    line=dict(color="black", width=1),
                ),
                hovertemplate=f"trial {number}: re-init after epoch %{{x}}<extra></extra>",
            )
            shown.add("reinit")
    fig.update_layout(
        title="Learning curves (colour: method; dashed and x: pruned; dotted: running; "
        "red triangle: DR re-init)",
        xaxis_title="epoch (0-based)",
        yaxis_title=ACC,
        **LAYOUT,
    )
    fig.update_xaxes(**_integer_axis(history["epoch"]))
    fig.update_yaxes(range=_acc_range(history["val_acc"]))
    return fig


def by_group_figure(trials: pd.DataFrame, colours: dict[str, str]) -> go.Figure | None:
    """Box plots with every complete trial as a point, by method and by fusion."""
    complete = trials[trials["state"] == "COMPLETE"]
    if complete.empty:
        return None
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("by balancing method", "by fusion"), horizontal_spacing=0.1
    )
    for col, key in ((1, "method"), (2, "fusion")):
        for name, group in complete.groupby(key):
            colour = colours.get(name, "#555") if key == "method" else None
            fig.add_box(
                x=[name] * len(group),
                y=group["value"],
                name=str(name),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker=dict(color=colour),
                customdata=group[["number"]],
                showlegend=False,
                hovertemplate="trial %{customdata[0]}<br>val_acc %{y:.4f}<extra></extra>",
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=key, row=1, col=col)
        fig.update_yaxes(
            title_text=f"best {ACC}", range=_acc_range(complete["value"]), row=1, col=col
        )
    missing = sorted(set(trials["method"].dropna()) - set(complete["method"]))
    title = "Accuracy of the complete trials by method and by fusion"
    if missing:  # a method with only pruned / failed trials would silently vanish from the plot
        title += f"<br><sub>not shown, no complete trial: {', '.join(missing)}</sub>"
    fig.update_layout(title=title, **LAYOUT)
    return fig


def _padded_range(values: pd.Series) -> tuple[float, float]:
    """The values' range, widened when they are all equal (a zero-width axis has no ticks)."""
    low, high = float(values.min()), float(values.max())
    return (low - 0.01, high + 0.01) if high - low < 1e-9 else (low, high)


def _dimension(label: str, values: pd.Series) -> dict:
    """A parallel-coordinates axis; few distinct values get exactly those ticks (no 1.2
    re-inits)."""
    low, high = _padded_range(values)
    dim = dict(label=label, values=values, range=[low, high])
    distinct = sorted(values.unique())
    if len(distinct) <= 8:
        dim.update(tickvals=distinct, ticktext=[f"{v:.4g}" for v in distinct])
    return dim


def method_figure(trials: pd.DataFrame, method: type[Method]) -> go.Figure | None:
    """Parallel coordinates: the parameters a method's report plots (Method.report_axes, e.g. DR's
    re-init interval, alpha and count) against its complete trials' accuracy."""
    # The search names a method's parameter `<method>.<param>`: a frame column
    # `params_<method>.<param>`.
    labels = {f"params_{method.name}.{param}": label for param, label in method.report_axes.items()}
    axes = [c for c in labels if c in trials]
    mine = trials[(trials["state"] == "COMPLETE") & (trials["method"] == method.name)].dropna(
        subset=axes
    )
    if not axes or mine.empty:
        return None
    dims = [_dimension(labels[c], mine[c].astype(float)) for c in axes]
    dims.append(_dimension(f"best {ACC}", mine["value"]))
    low, high = _padded_range(trials.loc[trials["state"] == "COMPLETE", "value"])
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line=dict(
                color=mine["value"],
                colorscale="Viridis",
                cmin=low,
                cmax=high,
                showscale=True,
                colorbar=dict(title=dict(text="val acc")),
            ),
        )
    )
    title = method.title()
    fig.update_layout(
        title=f"{title} parameters against accuracy ({len(mine)} complete {title} "
        f"trial{'s' * (len(mine) != 1)})",
        **LAYOUT,
    )
    fig.update_layout(margin=dict(l=80, r=80, t=110, b=40))
    return fig


def importance_figure(importances: dict[str, float]) -> go.Figure | None:
    if not importances:
        return None
    names = list(importances)[::-1]  # largest at the top
    fig = go.Figure(
        go.Bar(
            x=[importances[n] for n in names],
            y=names,
            orientation="h",
            texttemplate="%{x:.3f}",
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Parameter importances (Optuna PED-ANOVA, complete trials)",
        xaxis_title="importance (sums to 1)",
        yaxis_title="parameter",
        **LAYOUT,
    )
    fig.update_layout(height=max(300, 120 + 32 * len(names)))
    return fig


def modality_figure(top: pd.DataFrame) -> go.Figure | None:
    """Fused vs audio-only vs visual-only validation accuracy at the best epoch of the best
    trials."""
    best = top[(top["state"] == "COMPLETE") & top["val_acc_audio"].notna()]
    if best.empty:
        return None
    labels = [f"#{n} {m}/{f}" for n, m, f in zip(best["number"], best["method"], best["fusion"])]
    fig = go.Figure()
    for key, name in (
        ("value", "fused (both)"),
        ("val_acc_audio", "audio only"),
        ("val_acc_visual", "visual only"),
    ):
        fig.add_bar(
            x=labels,
            y=best[key],
            name=name,
            hovertemplate="%{x}<br>" + name + " %{y:.4f}<extra></extra>",
        )
    fig.update_layout(
        title="Per-modality accuracy of the best trials (validation, at the best epoch)",
        xaxis_title="trial (number method/fusion)",
        yaxis_title=ACC,
        barmode="group",
        **LAYOUT,
    )
    fig.update_yaxes(
        range=_acc_range(
            pd.concat([best["value"], best["val_acc_audio"], best["val_acc_visual"]]), True
        )
    )
    return fig


def verified_figure(rows: list[dict]) -> go.Figure | None:
    """drltune verify: each verified trial's test accuracy (mean ± std over fresh seeds) beside the
    search's own test accuracy and each reference method's, with error bars."""
    if not rows:
        return None
    labels = [f"#{r['trial']} {r['method']}" for r in rows]
    fig = go.Figure()
    fig.add_bar(
        x=labels,
        y=[r["test_acc_mean"] for r in rows],
        name="verified (fresh seeds)",
        error_y=dict(type="data", array=[r["test_acc_std"] for r in rows]),
        hovertemplate="%{x}<br>verified %{y:.4f}<extra></extra>",
    )
    for ref in sorted({ref for r in rows for ref in r["references"]}):
        refs = [r["references"].get(ref) for r in rows]
        name = (
            "its published config" if ref == "published" else f"{ref} at its defaults"
        )  # compare's reference
        fig.add_bar(
            x=labels,
            y=[d["test_acc_mean"] if d else None for d in refs],
            name=name,
            error_y=dict(type="data", array=[d["test_acc_std"] if d else 0 for d in refs]),
            hovertemplate="%{x}<br>" + ref + " %{y:.4f}<extra></extra>",
        )
    fig.add_scatter(
        x=labels,
        y=[r["search_test_acc"] for r in rows],
        mode="markers",
        name="search (one seed)",
        marker=dict(symbol="diamond", size=11, color="black"),
    )
    values = pd.Series(
        [r["test_acc_mean"] for r in rows] + [r["search_test_acc"] for r in rows], dtype=float
    )
    fig.update_layout(
        title="Verified test accuracy (mean ± std over fresh seeds) vs the search's",
        xaxis_title="trial (number method)",
        yaxis_title="test accuracy",
        barmode="group",
        **LAYOUT,
    )
    fig.update_yaxes(range=_acc_range(values, True))
    return fig


def leaderboard_figure(rows: list[dict]) -> go.Figure | None:
    """drltune compare: each method's verified test accuracy (mean, error bars: the 95 % interval
    over the fresh seeds) beside its published configuration's (error bars: ± std)."""
    rows = [r for r in rows if r["test_acc_mean"] is not None]
    if not rows:
        return None
    methods = [r["method"] for r in rows]
    fig = go.Figure()
    fig.add_bar(
        x=methods,
        y=[r["test_acc_mean"] for r in rows],
        name="tuned (95 % interval)",
        error_y=dict(
            type="data",
            symmetric=False,
            array=[
                (r["test_acc_ci_high"] - r["test_acc_mean"])
                if r["test_acc_ci_high"] is not None
                else 0
                for r in rows
            ],
            arrayminus=[
                (r["test_acc_mean"] - r["test_acc_ci_low"])
                if r["test_acc_ci_low"] is not None
                else 0
                for r in rows
            ],
        ),
        hovertemplate="%{x}<br>tuned %{y:.4f}<extra></extra>",
    )
    fig.add_bar(
        x=methods,
        y=[r["published_acc_mean"] for r in rows],
        name="published config (± std)",
        error_y=dict(type="data", array=[r["published_acc_std"] or 0 for r in rows]),
        hovertemplate="%{x}<br>published %{y:.4f}<extra></extra>",
    )
    seeds = max(len(r["seeds"]) for r in rows)
    fig.update_layout(
        title=f"Method leaderboard: test accuracy on {seeds} fresh seeds (drltune compare)",
        xaxis_title="method",
        yaxis_title="test accuracy",
        barmode="group",
        **LAYOUT,
    )
    return fig


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>drltune study {title}</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:auto;padding:0 16px;color:#222}}
pre{{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}}
table.trials{{border-collapse:collapse;font-size:13px;width:100%}}
table.trials th,table.trials td{{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;\
vertical-align:top}}
table.trials th{{background:#f0f0f0}} \
table.trials td.num{{text-align:right;font-variant-numeric:tabular-nums}}
table.trials td.params{{font-size:12px;color:#444;word-break:break-word}} \
tr.incomplete td{{color:#777}}
.noise{{background:#fff7e0;padding:6px 10px;border-left:4px solid #e0a800}}
.note{{color:#a33;font-weight:bold}} section{{margin-bottom:28px}} \
.missing{{color:#666;font-style:italic}}</style>
</head><body>
<h1>drltune study <code>{title}</code></h1>
{body}
</body></html>
"""


HEADINGS = {
    "number": "trial",
    "state": "state",
    "score": "val_acc",
    "method": "method",
    "fusion": "fusion",
    "epochs_run": "epochs run",
    "best_epoch": "best epoch",
    "reinits": "re-inits fired",
    "test_acc": "test_acc",
    "params": "parameters",
}


def _cell(column: str, value: Any) -> str:  # a DataFrame cell
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return '<td class="num"></td>'
    if column in ("score", "test_acc"):
        return f'<td class="num">{float(value):.4f}</td>'
    if column in ("number", "epochs_run", "best_epoch", "reinits"):
        return f'<td class="num">{int(value)}</td>'
    css = ' class="params"' if column == "params" else ""
    return f"<td{css}>{html.escape(str(value))}</td>"


def trials_html(frame: pd.DataFrame, first: str | None = None) -> str:
    """A real table (wraps instead of scrolling sideways); rows of incomplete trials are greyed."""
    if frame.empty:
        return '<p class="missing">(none)</p>'
    cols = ([first] if first else []) + [c for c in TABLE_COLUMNS if c != first]
    head = "".join(f"<th>{HEADINGS[c]}</th>" for c in cols)
    rows = []
    for _, row in frame.iterrows():
        css = "" if row["state"] == "COMPLETE" else ' class="incomplete"'
        rows.append(f"<tr{css}>" + "".join(_cell(c, row[c]) for c in cols) + "</tr>")
    return (
        f'<table class="trials"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def pareto_figure(trials: pd.DataFrame, names: list[str]) -> go.Figure | None:
    """A two-objective study: every complete trial by its two values, the Pareto front joined up."""
    x, y = (f"objective_{n}" for n in names)
    complete = trials[(trials["state"] == "COMPLETE") & trials[x].notna()]
    if complete.empty:
        return None
    front = complete[complete["pareto"].astype(bool)].sort_values(y)
    hover = "#%{text}<br>" + names[0] + " %{y:.4f}<br>" + names[1] + " %{x:.4f}<extra></extra>"
    fig = go.Figure()
    fig.add_scatter(
        x=complete[y],
        y=complete[x],
        mode="markers",
        name="complete trials",
        text=complete["number"],
        marker=dict(color="#bbbbbb", size=8),
        hovertemplate=hover,
    )
    fig.add_scatter(
        x=front[y],
        y=front[x],
        mode="lines+markers",
        name="Pareto front",
        text=front["number"],
        line=dict(shape="hv"),
        marker=dict(size=11),
        hovertemplate=hover,
    )
    fig.update_layout(
        title=f"Pareto front: {names[0]} (up is better) against {names[1]} (left is better)",
        xaxis_title=names[1],
        yaxis_title=names[0],
        **LAYOUT,
    )
    return fig


def render_html(summary: Summary, trials: pd.DataFrame, history: pd.DataFrame) -> str:
    """The whole page; a plot that has nothing to show is replaced by one sentence that says why."""
    from drltune.methods import METHODS

    colours = _colours(list(trials["method"].dropna()))
    parts = [
        f"<p>{counts_line(summary)}"
        + (f"; dataset <code>{html.escape(summary.dataset)}</code>" if summary.dataset else "")
        + ".</p>"
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in summary.notes]
    if summary.noise:
        parts.append(f'<p class="noise"><b>Noise:</b> {html.escape(summary.noise)}.</p>')
    if summary.choice:
        parts.append(f'<p class="noise">{html.escape(summary.choice)}.</p>')
    parts.append(
        "<section><h2>Best trial per method</h2>"
        f"<p>{html.escape(BEST_PER_METHOD_NOTE.capitalize())}.</p>"
        f"{trials_html(summary.best_by_method, 'method')}</section>"
    )
    parts.append(f"<section><h2>Top trials</h2>{trials_html(summary.top)}</section>")
    if summary.pareto is not None:
        parts.insert(
            1,
            f"<section><h2>Pareto front ({' and '.join(summary.objective)})</h2>"
            f"<pre>{html.escape(pareto_table(summary.pareto, summary.objective))}</pre></section>",
        )
    plots = [
        *(
            (("Pareto front", pareto_figure(trials, summary.objective), "no complete trial"),)
            if summary.pareto is not None
            else ()
        ),
        (
            "Optimisation history",
            history_figure(trials, colours),
            "no trial has reported an accuracy",
        ),
        ("Learning curves", curves_figure(history, colours), "no trial has reported an epoch"),
        ("Accuracy by method and fusion", by_group_figure(trials, colours), "no complete trial"),
        *(
            (
                f"{m.title()} parameters",
                method_figure(trials, m),
                f"no complete {m.title()} trial with its parameters",
            )
            for m in (METHODS.get(name) for name in METHODS.names())
            if m.report_axes
        ),
        (
            "Parameter importances",
            importance_figure(summary.importances),
            next((n for n in summary.notes if "importance" in n), "no complete trial"),
        ),
        ("Per-modality accuracy", modality_figure(summary.top), "no complete trial"),
    ]
    if summary.verified:  # optional: shown once `drltune verify` has stored runs
        plots.append(
            ("Verified on fresh seeds", verified_figure(summary.verified), "no verified run")
        )
    if summary.leaderboard:  # optional: the study is one method of a `drltune compare`
        plots.append(
            (
                "Method leaderboard (drltune compare)",
                leaderboard_figure(summary.leaderboard),
                "no verified run",
            )
        )
    first = True
    for heading, fig, why in plots:
        if fig is None:
            parts.append(
                f'<section><h2>{heading}</h2><p class="missing">Not shown: '
                f"{html.escape(why)}.</p></section>"
            )
            continue
        div = pio.to_html(
            fig, full_html=False, include_plotlyjs=first, config={"displaylogo": False}
        )
        first = False
        parts.append(f"<section><h2>{heading}</h2>{div}</section>")
    failed = trials[trials["state"] == "FAIL"]
    if not failed.empty:
        errors = failed["error"].fillna("(no error stored)")
        rows = "\n".join(f"trial {n}: {e}" for n, e in zip(failed["number"], errors))
        parts.append(f"<section><h2>Failed trials</h2><pre>{html.escape(rows)}</pre></section>")
    return PAGE.format(title=html.escape(summary.study), body="\n".join(parts))


def write_report(
    path: str | Path, summary: Summary, trials: pd.DataFrame, history: pd.DataFrame
) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(summary, trials, history), encoding="utf-8")
    except OSError as exc:
        raise DrltuneError(f"cannot write the report {path}: {exc.strerror}") from None
    return path
