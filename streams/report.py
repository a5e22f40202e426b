"""`backtest --report DIR`: the backtest as a page a risk analyst opens from disk.

DIR/index.html holds everything it shows, plotly.js included once, so it opens with
no network (mailed, or on a machine with no way out); DIR/report.json is what
`backtest --json` prints, the numbers the page was drawn from. Plotly is imported
here only, when a report is asked for: `--help`, replay and a plain backtest do
without it.
"""

from __future__ import annotations

import errno
import html
import os
from typing import TYPE_CHECKING, Any

import orjson

from streams.backtest import ACTIONS
from streams.errors import ConfigError

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

# One colour per action in every figure, and one per side: the baseline grey.
ACTION_COLOURS = {"warn": "#ef6c00", "downgrade": "#c62828", "close": "#4a148c",
                  "restore": "#2e7d32", "hold": "#0277bd", "release": "#78909c"}
SIDE_COLOURS = {"baseline": "#9e9e9e", "policy": "#1565c0"}
# The figures, in page order: their div ids and titles (the browser tests read both).
FIGURES = {
    "by-day": "Decisions per day, by action",
    "differing": "Users whose decisions differ",
    "warning-to-action": "Days from warning to action",
}

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222;padding:0 1em}
h1{font-size:1.4em;margin-bottom:.2em} .meta{color:#666} h2{margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#c62828}.down{color:#2e7d32} code{font-size:.9em}
.figure{margin:1em 0}
"""


def prepare(folder: str) -> None:
    """Make the report's folder before the run, so that one which cannot be made or
    written is said in a second, not after the pass over the logs; plotly, an extra,
    must be installed."""
    from importlib.util import find_spec

    if find_spec("plotly") is None:
        raise ConfigError("backtest --report draws its figures with plotly, which is not "
                          "installed: pip install 'closure-monitor[report]'")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"{folder}: cannot write: {os.strerror(errno.ENOTDIR)}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot write: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{folder}: cannot write: {os.strerror(errno.EACCES)}")


def write(folder: str, data: dict[str, Any]) -> None:
    """DIR/report.json and DIR/index.html from a backtest's `Report.as_dict()`."""
    page = render(data).encode()
    try:
        with open(os.path.join(folder, "report.json"), "wb") as out:
            out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        with open(os.path.join(folder, "index.html"), "wb") as out:
            out.write(page)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot write: {exc.strerror or exc}") from exc


def render(data: dict[str, Any]) -> str:
    """The page: a heading, the three figures, then the summary tables."""
    figures = [by_day_figure(data), differing_figure(data), warning_to_action_figure(data)]
    parts = []
    for n, (div_id, figure) in enumerate(zip(FIGURES, figures, strict=True)):
        height = figure.layout.height
        parts.append("<div class='figure'>" + figure.to_html(
            full_html=False, include_plotlyjs=n == 0,  # the bundle inline, once
            div_id=div_id, default_height=f"{height}px",
            config={"displaylogo": False, "responsive": True}) + "</div>")
    lines = data["lines"]
    title = f"Backtest: policy {data['policy']} against {data['baseline']}"
    return "\n".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Backtest: policy <code id='policy'>{_e(data['policy'])}</code> against "
        f"baseline <code id='baseline'>{_e(data['baseline'])}</code></h1>",
        f"<p class='meta'>{lines['read']:,} lines read: {lines['applied']:,} applied, "
        f"{lines['duplicates']:,} duplicates, {lines['rejected']:,} rejected; "
        f"{lines['late']:,} late. {data['users_differing']:,} users' decisions differ.</p>",
        *parts,
        *_tables(data),
        "</body></html>",
    ]) + "\n"


def by_day_figure(data: dict[str, Any]) -> Figure:
    """Stacked bars of each day's decisions by action: the baseline above, the policy
    below, on one time axis."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=(f"baseline {data['baseline']}",
                                        f"policy {data['policy']}"))
    rows = data["decisions_by_day"]
    for row, side in enumerate(("baseline", "policy"), start=1):
        for action in ACTIONS:
            days = [r for r in rows if r["action"] == action and r[side]]
            fig.add_bar(x=[r["day"] for r in days], y=[r[side] for r in days], name=action,
                        legendgroup=action, showlegend=row == 1, meta=side,
                        marker_color=ACTION_COLOURS[action], row=row, col=1)
    fig.update_layout(title_text=FIGURES["by-day"], barmode="stack", height=620,
                      template="plotly_white")
    fig.update_yaxes(title_text="decisions")
    return fig


def differing_figure(data: dict[str, Any]) -> Figure:
    """The users whose decisions differ: by the reason codes involved (a user under
    each of theirs), and by how their final status moves (each user once)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.25,
                        subplot_titles=("by reason involved", "by final status, baseline -> "
                                                              "policy"))
    reasons = data["users_differing_by_reason"][::-1]  # the most users on top
    fig.add_bar(x=[r["users"] for r in reasons], y=[r["reason"] for r in reasons],
                orientation="h", name="by reason", meta="reason",
                marker_color=SIDE_COLOURS["policy"], row=1, col=1)
    moves = sorted(data["status_moves"], key=lambda m: m["users"])
    fig.add_bar(x=[m["users"] for m in moves], y=[f"{m['from']} -> {m['to']}" for m in moves],
                orientation="h", name="by status move", meta="status_move",
                marker_color=SIDE_COLOURS["policy"], row=1, col=2)
    fig.update_layout(title_text=FIGURES["differing"], showlegend=False, template="plotly_white",
                      height=max(360, 120 + 26 * max(len(reasons), len(moves))))
    fig.update_xaxes(title_text="users")
    return fig


def warning_to_action_figure(data: dict[str, Any]) -> Figure:
    """How long warnings ran before the downgrade or close they announced, under each
    policy: one count per warning, in whole days."""
    import plotly.graph_objects as go

    rows = data["warning_to_action_days"]
    fig = go.Figure()
    for side in ("baseline", "policy"):
        # The counts are kept by whole day: one bin a day, so that notices of 7, 14
        # and 30 days stand apart.
        fig.add_histogram(x=[r["days"] for r in rows], y=[r[side] for r in rows],
                          histfunc="sum", xbins={"start": -0.5, "size": 1},
                          name=f"{side} {data[side]}",
                          meta=side, marker_color=SIDE_COLOURS[side])
    fig.update_layout(title_text=FIGURES["warning-to-action"], barmode="group", height=420,
                      template="plotly_white", bargap=0, xaxis_rangemode="tozero",
                      xaxis_title_text="days from the warning to the downgrade or close",
                      yaxis_title_text="warnings")
    return fig


def _tables(data: dict[str, Any]) -> list[str]:
    out = ["<h2>Decisions by action and reason</h2>",
           "<table id='decisions'><tr><th>action</th><th>reason</th><th class='n'>baseline</th>"
           "<th class='n'>policy</th><th class='n'>delta</th></tr>"]
    for r in data["decisions"]:
        change = "up" if r["delta"] > 0 else "down" if r["delta"] < 0 else ""
        out.append(f"<tr data-action='{_e(r['action'])}' data-reason='{_e(r['reason'])}'>"
                   f"<td>{_e(r['action'])}</td><td>{_e(r['reason'])}</td>"
                   f"<td class='n'>{r['baseline']:,}</td><td class='n'>{r['policy']:,}</td>"
                   f"<td class='n delta {change}'>{r['delta']:+,}</td></tr>")
    out.append("</table>")
    statuses = sorted(set(data["final_status"]["baseline"]) | set(data["final_status"]["policy"]))
    out += ["<h2>Final status of the users decided on</h2>",
            "<table id='final-status'><tr><th>status</th><th class='n'>baseline</th>"
            "<th class='n'>policy</th></tr>"]
    out += [f"<tr><td>{_e(s)}</td><td class='n'>{data['final_status']['baseline'].get(s, 0):,}"
            f"</td><td class='n'>{data['final_status']['policy'].get(s, 0):,}</td></tr>"
            for s in statuses]
    out.append("</table>")
    lines = data["lines"]
    out += ["<h2>Lines</h2><table id='lines'>"]
    out += [f"<tr><th>{name}</th><td class='n'>{lines[name]:,}</td></tr>"
            for name in ("read", "applied", "duplicates", "rejected", "late")]
    out.append("</table>")
    out += [f"<h2>Users whose decisions differ: {data['users_differing']:,}</h2>",
            "<table id='status-moves'><tr><th>final status, baseline</th><th>policy</th>"
            "<th class='n'>users</th></tr>"]
    out += [f"<tr><td>{_e(m['from'])}</td><td>{_e(m['to'])}</td>"
            f"<td class='n'>{m['users']:,}</td></tr>" for m in data["status_moves"]]
    out.append("</table>")
    if data["examples"]:
        out += ["<h2>Examples</h2>",
                "<table id='examples'><tr><th>user</th><th>baseline</th><th>policy</th></tr>"]
        out += [f"<tr><td><code>{_e(x['user_id'])}</code></td>"
                f"<td>{_e(' '.join(x['baseline']) or '-')}</td>"
                f"<td>{_e(' '.join(x['policy']) or '-')}</td></tr>" for x in data["examples"]]
        out.append("</table>")
    return out


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)
