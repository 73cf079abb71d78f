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
    seen = {f.frame for f in result.faces if not f.fallback}
    sampled = result.media.get("sampled_indices") or []
    fps = result.media.get("fps") or None
    empty = [i for i in sampled if i not in seen]
    if empty and seen:  # the gaps: sampled frames in which no face was found, marked on the axis
        fig.add_trace(go.Scatter(
            x=[i / fps if fps else i for i in empty], y=[0.0] * len(empty), mode="markers", name="no face in this frame",
            marker=dict(symbol="x", size=9, color="grey"), customdata=[[i] for i in empty],
            hovertemplate="frame %{customdata[0]}<br>t=%{x:.2f}s<br>no face found<extra></extra>"))
    if result.threshold is not None:
        fig.add_hline(y=result.threshold, line_dash="dash", line_color="grey",
                      annotation_text=f"threshold {result.threshold:.2f}", annotation_position="top left")
    if result.fake_probability is not None:
        fig.add_hline(y=result.fake_probability, line_dash="dot", line_color="crimson",
                      annotation_text=f"verdict {result.fake_probability:.2f}", annotation_position="bottom right")
    title = "P(fake) per tracked face over time"
    if sampled:
        title += f" (faces in {len(seen)} of {len(sampled)} sampled frames)"
    if result.media.get("duration_s"):  # the whole video on the axis, so a late first face is visibly late
        fig.update_xaxes(range=[0, float(result.media["duration_s"])])
    fig.update_layout(
        title=title,
        xaxis_title="time (s)",
        yaxis_title="P(fake)",
        yaxis_range=[0, 1],
        height=340,
        margin=dict(l=50, r=20, t=50, b=40),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def comparison_figure(comparison) -> go.Figure:
    """P(fake) per face (per person in a video) per detector as grouped bars, each detector's own
    threshold as a short dashed tick over its bar; hover shows the exact score."""
    from forensics.compare import rows, units

    table = rows(comparison)
    order = units(comparison)
    fig = go.Figure()
    for run in comparison.done:
        mine = {r.unit: r for r in table if r.detector == run.detector}
        fig.add_trace(go.Bar(
            name=run.detector, x=[u for u in order if u in mine], y=[mine[u].fake_probability for u in order if u in mine],
            customdata=[[mine[u].threshold, "flagged" if mine[u].flagged else "not flagged"] for u in order if u in mine],
            hovertemplate="%{x}<br>P(fake)=%{y:.3f}<br>threshold %{customdata[0]:.2f}: %{customdata[1]}<extra>"
                          + run.detector + "</extra>"))
    thresholds = sorted({r.threshold for r in table})
    for t in thresholds:
        fig.add_hline(y=t, line_dash="dash", line_color="grey",
                      annotation_text=f"threshold {t:.2f}", annotation_position="top left")
    what = "person" if comparison.kind == "video" else "face"
    fig.update_layout(title=f"P(fake) per {what} per detector", barmode="group", yaxis_title="P(fake)",
                      yaxis_range=[0, 1], height=360, margin=dict(l=50, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.2))
    return fig
