"""A trial's learning curve as a small standalone SVG (optuna-dashboard shows image artifacts
inline).

Written by hand so that a search needs no image backend (plotly's static export needs kaleido).
"""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

WIDTH, HEIGHT = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 130, 34, 42
SERIES = (
    ("val_acc", "fused (val)", "#1f77b4", ""),
    ("val_acc_audio", "audio only", "#ff7f0e", "5,3"),
    ("val_acc_visual", "visual only", "#2ca02c", "2,3"),
)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def curve_svg(history: Sequence[dict[str, Any]], title: str) -> str:
    """val_acc, audio-only and visual-only accuracy by epoch; re-init epochs as red dashed lines."""
    epochs = [int(r["epoch"]) for r in history]
    values = [v for r in history for key, *_ in SERIES if (v := _number(r.get(key))) is not None]
    low = max(0.0, min(values, default=0.0) - 0.05)
    high = min(1.0, max(values, default=1.0) + 0.05)
    if high - low < 0.1:
        low, high = max(0.0, low - 0.05), min(1.0, high + 0.05)
    first, last = (min(epochs), max(epochs)) if epochs else (0, 1)
    span = max(1, last - first)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(epoch: float) -> float:
        return LEFT + (epoch - first) / span * plot_w

    def y(acc: float) -> float:
        return TOP + (high - acc) / (high - low) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14">{escape(title)}</text>',
    ]
    for i in range(5):  # horizontal grid with accuracy labels
        acc = low + (high - low) * i / 4
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(acc):.1f}" y2="{y(acc):.1f}" '
            'stroke="#ddd"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{y(acc) + 4:.1f}" text-anchor="end">{acc:.2f}</text>')
    step = max(1, round(span / 10))
    for epoch in range(first, last + 1, step):
        out.append(
            f'<text x="{x(epoch):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{epoch}</text>'
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
        "epoch (0-based)</text>"
    )
    for record in history:
        if record.get("reinit"):
            ex = x(int(record["epoch"]))
            out.append(
                f'<line x1="{ex:.1f}" x2="{ex:.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
                'stroke="#d62728" stroke-dasharray="4,3">'
                f"<title>re-init after epoch {record['epoch']}</title></line>"
            )
    for key, label, colour, dash in SERIES:
        points = [
            (x(int(r["epoch"])), y(v)) for r in history if (v := _number(r.get(key))) is not None
        ]
        if not points:
            continue
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        dashing = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dashing}/>'
        )
        if len(points) == 1:
            out.append(
                f'<circle cx="{points[0][0]:.1f}" cy="{points[0][1]:.1f}" r="3" fill="{colour}"/>'
            )
    legend = [(label, colour, dash) for key, label, colour, dash in SERIES]
    if any(r.get("reinit") for r in history):
        legend.append(("re-init", "#d62728", "4,3"))
    for i, (label, colour, dash) in enumerate(legend):
        ly = TOP + 12 + 18 * i
        dashing = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{WIDTH - RIGHT + 12}" x2="{WIDTH - RIGHT + 36}" y1="{ly}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="2"{dashing}/>'
        )
        out.append(f'<text x="{WIDTH - RIGHT + 42}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)
