"""Plotly figures: a video's P(fake) per person over time, detectors compared, federated rounds."""

from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go

from forensics.compare import rows, units
from forensics.results import AnalysisResult


def _person_order(name: str) -> tuple:
    """"person 2" before "person 10"; "whole frames" last."""
    number = name.removeprefix("person ")
    return (0, int(number), "") if number.isdigit() else (1, 0, name)


def timeline_figure(result: AnalysisResult) -> go.Figure:
    """One line per tracked person (or the whole frames when no face was found), the threshold
    dashed, the aggregated verdict as a dotted line; hover shows frame, time and score."""
    series: dict[str, list] = defaultdict(list)
    for face in result.faces:
        name = "whole frames" if face.fallback else f"person {face.track}"
        series[name].append(face)
    counted = {f"person {t.track}" for t in result.tracks if t.counted}
    # People seen too briefly to count toward the verdict are drawn thin and grey, under one legend entry that
    # names them: a crowd's legend of a row per few people squeezed the plot, and they do not decide anything.
    left_out = [name for name in sorted(series, key=_person_order) if name not in counted and name != "whole frames"]
    numbers = ", ".join(name.removeprefix("person ") for name in left_out)
    left_out_name = f"left out, too short: {'person' if len(left_out) == 1 else 'people'} {numbers}"
    fig = go.Figure()
    # The counted people first, in the legend as on the plot, then those left out.
    for name, faces in sorted(series.items(), key=lambda item: (item[0] in left_out, _person_order(item[0]))):
        faces = sorted(faces, key=lambda f: f.frame)
        x = [f.timestamp if f.timestamp is not None else f.frame for f in faces]
        out = name in left_out
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[f.fake_probability for f in faces],
                customdata=[[f.frame] for f in faces],
                mode="lines+markers",
                name=left_out_name if out else name,
                legendgroup="left out" if out else name,
                showlegend=not out or name == left_out[0],
                line=dict(color="rgb(160, 160, 160)", width=1, dash="dot") if out else None,
                marker=dict(color="rgb(160, 160, 160)", size=5) if out else None,
                hovertemplate="frame %{customdata[0]}<br>t=%{x:.2f}s<br>P(fake)=%{y:.3f}<extra>" + name
                              + (" (left out: too short)" if out else "") + "</extra>",
            )
        )
    seen = {f.frame for f in result.faces if not f.fallback}
    sampled = result.media.sampled_indices

    def when(i: int) -> float:  # where a player shows the frame (a variable frame rate's own times)
        t = result.media.frame_time(i)
        return i if t is None else t

    empty = [i for i in sampled if i not in seen]
    if empty and seen:  # the gaps: sampled frames in which no face was found, marked on the axis
        fig.add_trace(go.Scatter(
            x=[when(i) for i in empty], y=[0.0] * len(empty), mode="markers", name="no face in this frame",
            marker=dict(symbol="x", size=9, color="grey"), customdata=[[i] for i in empty],
            hovertemplate="frame %{customdata[0]}<br>t=%{x:.2f}s<br>no face found<extra></extra>"))
    small = sorted({s["frame"] for s in result.small_faces})
    if small:  # no face to judge, but faces too small to judge were seen in these (Analyzer._small_faces)
        fig.add_trace(go.Scatter(
            x=[when(i) for i in small], y=[0.0] * len(small), mode="markers",
            name="face too small to judge", showlegend=True,  # named even as the only trace: nothing else says it
            marker=dict(symbol="square-open", size=11, color="rgb(230, 160, 0)"),
            customdata=[[i] for i in small],
            hovertemplate="frame %{customdata[0]}<br>t=%{x:.2f}s<br>a face too small to judge<extra></extra>"))
    # The two lines are named in the right margin, beside their ends, not over the curves they cross;
    # the upper label sits above its line and the lower one below, so that close values do not collide.
    lines = []
    if result.threshold is not None:
        lines.append((float(result.threshold), f"threshold {result.threshold:.2f}", "dash", "grey"))
    if result.fake_probability is not None:
        lines.append((float(result.fake_probability), f"verdict {result.fake_probability:.2f}", "dot", "crimson"))
    for k, (y, text, dash, colour) in enumerate(sorted(lines, key=lambda line: line[0])):
        fig.add_hline(y=y, line_dash=dash, line_color=colour)
        fig.add_annotation(x=1, xref="paper", xanchor="left", y=y, yref="y",
                           yanchor="top" if k == 0 and len(lines) > 1 else "bottom",
                           text=text, showarrow=False, font=dict(size=11, color=colour))
    title = "P(fake) per person over time"
    if sampled:
        title += f" (faces in {len(seen)} of {len(sampled)} sampled frames)"
    if result.media.duration_s:  # the whole video on the axis, so a late first face is visibly late
        fig.update_xaxes(range=[0, float(result.media.duration_s)])
    fig.update_layout(
        title=title,
        xaxis_title="time (s)",
        yaxis_title="P(fake)",
        yaxis_range=[0, 1],
        height=340,
        margin=dict(l=50, r=95, t=50, b=40),
        legend=dict(orientation="h", yanchor="top", y=-0.3, x=0),  # under the axis title, not over it
    )
    return fig


def federated_rounds_figure(rounds: list[dict]) -> go.Figure:
    """A federated run per round (entries of its ``federated_metrics.json``): the server's AUC on its
    held-out faces (all, and each held-out comparison), and each client's training loss."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Server evaluation (held-out faces)", "Client training loss"))
    scored = [r for r in rounds if r.get("server")]
    keys = sorted({k for r in scored for k in r["server"] if k == "auc" or k.startswith("auc: ")})
    for key in keys:
        points = [(r["round"], r["server"][key]) for r in scored if r["server"].get(key) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                 name="AUC, all" if key == "auc" else key.replace("auc: ", "AUC, "),
                                 line={"width": 3 if key == "auc" else 1.5}), row=1, col=1)
    clients: dict[str, list] = defaultdict(list)
    for r in rounds:
        for i, c in enumerate(r.get("clients") or []):
            clients[str(c.get("client", i))].append((r["round"], c.get("train-loss")))
    for name, points in sorted(clients.items()):
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                 name=f"client {name}", line={"dash": "dot"}), row=1, col=2)
    fig.update_xaxes(title_text="round", dtick=1)
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_layout(height=380, margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def comparison_figure(comparison) -> go.Figure:
    """P(fake) per face (per person in a video) per detector as grouped bars, each detector's own
    threshold as a short dashed tick over its bar; hover shows the exact score."""
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
