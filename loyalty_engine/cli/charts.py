"""Charts for the `loyalty analytics` reports (`--chart FILE`), drawn with matplotlib
without a display: PNG or SVG by the file's suffix, or HTML, a self-contained page with the
SVG inline and the numbers as tables. Offline: no script, style or font is fetched, and no
address of another host appears. Deterministic: the same figure writes the same bytes
(no dates or software versions in the metadata, fixed SVG ids)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loyalty_engine.cli.output import CommandRefused

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUFFIXES = (".png", ".svg", ".html")
_SVG_METADATA: dict[str, str | None] = {"Date": None, "Creator": None, "Format": None,
                                        "Type": None}


@dataclass(frozen=True, slots=True)
class ChartTable:
    """Numbers shown beside an HTML chart: a caption, the column names and the rows."""

    caption: str
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]


def check_chart_path(path: Path) -> None:
    """Refuse, before any work, a chart file whose suffix says no format written here."""
    if path.suffix.lower() not in SUFFIXES:
        raise CommandRefused(f"cannot write a chart to {str(path)!r}: give a file name ending "
                             "in .png, .svg or .html")


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A figure not tied to any display or global state (no pyplot)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "loyalty-engine"  # the same ids every time
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def write_chart(figure: Figure, path: Path, title: str = "",
                tables: Sequence[ChartTable] = ()) -> None:
    """Write figure to path: .png and .svg as such, .html as a page with the title, the SVG
    inline and the tables; any other suffix is refused with one sentence."""
    check_chart_path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            figure.savefig(path, format="png", metadata={"Software": None})
        elif suffix == ".svg":
            figure.savefig(path, format="svg", metadata=_SVG_METADATA)
        else:
            path.write_text(_page(figure, title, tables), encoding="utf-8")
    except OSError as error:
        raise CommandRefused(f"cannot write the chart to {str(path)!r}: "
                             f"{error.strerror or error}") from None


def inline_svg(figure: Figure) -> str:
    """The figure as an <svg> element for an HTML page: no XML prolog, doctype or namespace
    declarations (HTML gives SVG its namespace), href instead of xlink:href."""
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata=_SVG_METADATA)
    svg = out.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    return svg.replace("xlink:href=", "href=")


def _table(table: ChartTable) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row)
                     + "</tr>" for row in table.rows)
    return (f"<table>\n<caption>{html.escape(table.caption)}</caption>\n"
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
figure { margin: 0 0 2em 0; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 0 0 2em 0; }
caption { text-align: left; font-weight: bold; padding: 0 0 .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .75em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


def page(title: str, body: str, style: str = _STYLE) -> str:
    """A self-contained HTML page: the title (escaped), the style inline and the body as
    given (HTML already). Nothing is fetched: no script, stylesheet, font or image."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def _page(figure: Figure, title: str, tables: Sequence[ChartTable]) -> str:
    parts = "\n".join(_table(t) for t in tables)
    return page(title, f"<h1>{html.escape(title)}</h1>\n<figure>\n{inline_svg(figure)}\n"
                       f"</figure>\n{parts}")
