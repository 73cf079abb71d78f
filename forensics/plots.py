"""Plotly figures for the app: a video's P(fake) per tracked face over time."""

from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go

from forensics.analysis import AnalysisResult


def timeline_figure(result: AnalysisResult) -> go.Figure:
    """One line per tracked person (or the whole frames when no face was found), the threshold
    dashed, the aggregated verdict as a dotted line; hover shows frame, time and score."""
    series: dict[str, list] = defaultdict(list)
    for face in result.faces:
        name = "whole frames" if face.fallback else f"person {face.track}"
        series[name].append(face)
    counted = {f"person {t.track}" for t in result.tracks if t.counted}
    fig = go.Figure()
    for name, faces in sorted(series.items()):
        faces = sorted(faces, key=lambda f: f.frame)
        x = [f.timestamp if f.timestamp is not None else f.frame for f in faces]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[f.fake_probability for f in faces],
                customdata=[[f.frame] for f in faces],
                mode="lines+markers",
                name=name + ("" if name in counted or name == "whole frames" else " (left out: too short)"),
                hovertemplate="frame %{customdata[0]}<br>t=%{x:.2f}s<br>P(fake)=%{y:.3f}<extra>" + name + "</extra>",
            )
        )
    if result.threshold is not None:
        fig.add_hline(y=result.threshold, line_dash="dash", line_color="grey",
                      annotation_text=f"threshold {result.threshold:.2f}", annotation_position="top left")
    if result.fake_probability is not None:
        fig.add_hline(y=result.fake_probability, line_dash="dot", line_color="crimson",
                      annotation_text=f"verdict {result.fake_probability:.2f}", annotation_position="bottom right")
    fig.update_layout(
        title="P(fake) per tracked face over time",
        xaxis_title="time (s)",
        yaxis_title="P(fake)",
        yaxis_range=[0, 1],
        height=340,
        margin=dict(l=50, r=20, t=50, b=40),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig
