"""Outputs a chat cannot show (widgets, Plotly, Vega-Lite, Bokeh, any other rich type): their
text form and a line saying the full output is in the notebook, never silence.

The bundles are what those libraries publish in a Jupyter kernel (ipywidgets 8, Plotly 5's
default notebook renderer, Altair 5, Bokeh 3), cut to what matters here.
"""

from __future__ import annotations

from typing import Any

import pytest

from jupybot.kernels.api import DisplayData, ExecuteResult, OutputEvent, Stream
from jupybot.rendering import RenderOptions, render_outputs

HTML = RenderOptions()
TEXT_ONLY = RenderOptions(allow_html=False)

WIDGET = {
    "text/plain": "IntSlider(value=0)",
    "application/vnd.jupyter.widget-view+json": {
        "version_major": 2,
        "version_minor": 0,
        "model_id": "5c3b8c1f2a8e4e0b9d2f6a7e1c0b9a8d",
    },
}
PLOTLY = {
    "application/vnd.plotly.v1+json": {
        "data": [{"type": "scatter", "x": [1, 2, 3], "y": [4, 1, 2]}],
        "layout": {"template": {}},
        "config": {"plotlyServerURL": "https://plot.ly"},
    },
    "text/html": (
        '<div>                            <div id="9f1c" class="plotly-graph-div" '
        'style="height:525px; width:100%;"></div>            <script type="text/javascript">'
        '                require(["plotly"], function(Plotly) {'
        '                    Plotly.newPlot("9f1c", [{"type": "scatter"}], {}, {})'
        "                });            </script>        </div>"
    ),
}
VEGA_LITE = {
    "application/vnd.vegalite.v5+json": {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "mark": "bar",
        "data": {"values": [{"a": "A", "b": 28}]},
    },
    "text/plain": "alt.Chart(...)",
}
BOKEH = {
    "text/html": '<div id="p1001" data-root-id="p1001" style="display: contents;"></div>',
    "application/vnd.bokehjs_exec.v0+json": "",
}
JAVASCRIPT = {
    "application/javascript": "element.text('drawn by a script')",
    "text/plain": "<IPython.core.display.Javascript object>",
}
CUSTOM = {"application/vnd.example.map+json": {"zoom": 3}, "text/plain": "Map(zoom=3)"}

NOTE = "cannot be shown here: the full output is in the notebook ('notebook' sends it)."


@pytest.mark.parametrize(
    ("bundle", "text"),
    [
        (WIDGET, f"IntSlider(value=0)\nAn interactive widget {NOTE}"),
        (PLOTLY, f"A Plotly chart {NOTE}"),
        (VEGA_LITE, f"alt.Chart(...)\nA Vega-Lite chart {NOTE}"),
        (BOKEH, f"A Bokeh output {NOTE}"),
        (JAVASCRIPT, f"A JavaScript output {NOTE}"),
        (CUSTOM, f"Map(zoom=3)\nAn output of type application/vnd.example.map+json {NOTE}"),
    ],
    ids=["widget", "plotly", "vega-lite", "bokeh", "javascript", "another type"],
)
def test_what_a_chat_cannot_show_gets_its_text_and_a_line(
    bundle: dict[str, Any], text: str
) -> None:
    for event in (DisplayData(bundle), ExecuteResult(bundle, {}, 3)):
        plain = render_outputs([event], TEXT_ONLY)
        assert plain.text == text
        assert plain.html is None and not plain.images and not plain.files
        rich = render_outputs([event], HTML)
        assert rich.text == text
        assert rich.html is not None and "<script" not in rich.html
        assert "<em>" in rich.html and "the full output is in the notebook" in rich.html


def test_the_line_comes_where_the_output_was() -> None:
    events: list[OutputEvent] = [
        Stream("stdout", "before\n"),
        DisplayData(PLOTLY),
        Stream("stdout", "after\n"),
    ]
    assert render_outputs(events, TEXT_ONLY).text == f"before\nA Plotly chart {NOTE}\nafter"


def test_what_can_be_shown_is_shown_as_before() -> None:
    # A table with pandas' table schema beside it: its HTML says it all.
    table = {
        "text/html": "<table><tr><th>a</th></tr><tr><td>1</td></tr></table>",
        "application/vnd.dataresource+json": {"schema": {}, "data": [{"a": 1}]},
        "text/plain": "   a\n0  1",
    }
    rendered = render_outputs([DisplayData(table)], HTML)
    assert "cannot be shown" not in rendered.text
    assert rendered.html is not None and "<table>" in rendered.html
    # A chart that also has a PNG form arrives as the picture.
    pictured = dict(VEGA_LITE, **{"image/png": _PNG})
    assert len(render_outputs([DisplayData(pictured)], HTML).images) == 1
    # HTML with a script but text of its own keeps its text (the script is removed).
    scripted = {"text/html": "<b>bold</b><script>alert(1)</script>"}
    assert render_outputs([DisplayData(scripted)], TEXT_ONLY).text == "bold"


# A 1x1 PNG.
_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
