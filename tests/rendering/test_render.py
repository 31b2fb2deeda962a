"""The renderer against outputs recorded from a real kernel (tests/kernels/recorded/)."""

from __future__ import annotations

import json
from pathlib import Path

from jupybot.kernels.api import (
    ClearOutput,
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    OutputEvent,
    Stream,
    UpdateDisplayData,
)
from jupybot.rendering import RenderOptions, render_outputs

RECORDED = Path(__file__).parent.parent / "kernels" / "recorded"
TYPES = {
    cls.__name__: cls
    for cls in (Stream, DisplayData, UpdateDisplayData, ClearOutput, ExecuteResult, ErrorOutput)
}
HTML = RenderOptions()
TEXT_ONLY = RenderOptions(allow_html=False)


def recorded(name: str) -> list[OutputEvent]:
    events = json.loads((RECORDED / f"{name}.json").read_text())["events"]
    result: list[OutputEvent] = []
    for event in events:
        fields = event["fields"]
        if "traceback" in fields:
            fields["traceback"] = tuple(fields["traceback"])
        result.append(TYPES[event["type"]](**fields))
    return result


def test_stream_then_result_read_in_order() -> None:
    rendered = render_outputs(recorded("stream_and_result"), HTML)
    assert rendered.text == "hello\n2"
    assert rendered.html is None  # nothing rich: front ends show it as a code block
    assert not rendered.truncated


def test_a_progress_bar_shows_its_last_state() -> None:
    assert render_outputs(recorded("progress"), HTML).text == "100%"


def test_colours_are_stripped_unless_kept() -> None:
    plain = render_outputs(recorded("ansi_error"), HTML).text
    assert "\x1b" not in plain
    assert "ZeroDivisionError" in plain and "division by zero" in plain
    coloured = render_outputs(recorded("ansi_error"), RenderOptions(keep_ansi=True)).text
    assert "\x1b[31m" in coloured


def test_html_is_sanitised_and_markdown_rendered() -> None:
    rendered = render_outputs(recorded("html_and_markdown"), HTML)
    assert rendered.html is not None
    assert "<b>bold</b>" in rendered.html
    assert "script" not in rendered.html and "alert" not in rendered.html
    assert "<h1>Title</h1>" in rendered.html and "<em>emphasis</em>" in rendered.html
    assert "# Title" in rendered.text  # Markdown source is the text form


def test_without_html_markup_becomes_text() -> None:
    rendered = render_outputs(recorded("html_and_markdown"), TEXT_ONLY)
    assert rendered.html is None
    assert "bold" in rendered.text and "<" not in rendered.text
    assert "*emphasis*" in rendered.text


def test_latex_as_source_and_json_pretty() -> None:
    text = render_outputs(recorded("latex_and_json"), HTML).text
    assert "$\\frac{a}{b}$" in text
    assert '"a": [\n    1,\n    2\n  ]' in text and '"c": null' in text


def test_an_updated_display_shows_its_last_value() -> None:
    assert render_outputs(recorded("update_display"), HTML).text == "'two'"


def test_clear_output_drops_what_came_before() -> None:
    assert render_outputs(recorded("clear_output"), HTML).text == "after"


def test_a_matplotlib_figure_is_an_image_with_its_size() -> None:
    rendered = render_outputs(recorded("matplotlib_png"), HTML)
    [image] = rendered.images
    assert image.mimetype == "image/png" and image.data.startswith(b"\x89PNG")
    assert (image.width, image.height) == (534, 413)
    assert image.filename == "output-1.png"
    assert "Figure size" not in rendered.text  # the image replaces its text form


def test_svg_is_sent_as_a_file_and_rasterised() -> None:
    rendered = render_outputs(recorded("svg"), HTML)
    [svg] = rendered.files
    assert svg.mimetype == "image/svg+xml" and svg.filename.endswith(".svg")
    [bitmap] = rendered.images
    assert bitmap.mimetype == "image/png" and (bitmap.width, bitmap.height) == (40, 20)


def test_a_dataframe_is_a_table_in_html_and_in_text() -> None:
    rich = render_outputs(recorded("pandas_table"), HTML)
    assert rich.html is not None and "<table" in rich.html and "<style" not in rich.html
    text = render_outputs(recorded("pandas_table"), TEXT_ONLY)
    assert text.html is None
    assert text.text.splitlines()[0].split() == ["name", "value"]


def test_an_html_table_without_text_becomes_a_text_table() -> None:
    table = "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>"
    rendered = render_outputs([DisplayData({"text/html": table})], TEXT_ONLY)
    assert rendered.text == "a | b\n1 | 2"


def test_long_output_is_cut_and_kept_whole_as_a_file() -> None:
    rendered = render_outputs(recorded("long_output"), RenderOptions(max_text_chars=1000))
    assert rendered.truncated
    assert len(rendered.text) <= 1002 and rendered.text.endswith("…")
    [whole] = rendered.files
    assert whole.filename == "output.txt"
    assert whole.data.decode().splitlines()[-1] == "line 1999"


def test_broken_image_data_does_not_break_rendering() -> None:
    rendered = render_outputs(
        [DisplayData({"image/png": "not base64!", "text/plain": "<Figure>"})], HTML
    )
    assert rendered.images == [] and rendered.text == "<Figure>"
