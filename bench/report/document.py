"""A page of bench (the report, a comparison) as one document: a title and sections, each of text, tables, lists and
figures. It is rendered twice, by one Markdown renderer and one HTML renderer, from the same blocks; every value in
it is shown through ``render.plain`` (escaped for its format there), and every HTML page has the one stylesheet and
the one small inline script below (sorting and filtering tables: nothing is fetched, so a page opens offline)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from bench.text import shown

_MARKDOWN = re.compile(r"([\\`|\[\]])")  # what would end a cell, start code or a link, or escape the next
_BREAKS = re.compile(r"[\n\r\t]+")  # a text's own line breaks and tabs: a space in a cell
MAX_SHOWN = 1_000  # characters of one value in a table: the rest is counted, not shown (summary.csv holds it all)


def plain(value: object) -> str:
    """A value as text: floats as ``g``, line breaks a space, every other control, format or separator character
    escaped visibly (bench.text.shown: a bidi override or an escape sequence shows as ``\\u202e``, ``\\x1b``, never
    acts), and at most ``MAX_SHOWN`` characters of it."""
    if value is None:
        return ""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if len(text) > MAX_SHOWN:
        text = f"{text[:MAX_SHOWN]}… ({len(text) - MAX_SHOWN:,} more characters)"
    return shown(_BREAKS.sub(" ", text))


def html_text(value: object) -> str:
    """A value as HTML text that shows as written (``plain``), markup escaped."""
    return html.escape(plain(value))


def md_text(value: object) -> str:
    """A value as Markdown that stays in its table cell or line and shows as written (``plain``): markup escaped as
    HTML, ``|``, backticks, brackets and backslashes escaped."""
    return _MARKDOWN.sub(r"\\\1", html.escape(plain(value), quote=False))


@dataclass(frozen=True)
class Link:
    """A file the page links to, by its path relative to the page's folder."""

    path: str
    text: str


@dataclass
class Table:
    frame: pd.DataFrame  # cells: text, numbers, None, a Link or a list of Links, anything with a str()
    title: str = ""  # a heading of its own, one level below its section's


@dataclass
class Figure:
    name: str  # its file beside the page: Markdown links it, HTML embeds it
    png: bytes
    alt: str


@dataclass
class Items:
    """A list: each item a text, or parts of text and Links."""

    items: list


@dataclass
class Lines:
    """Lines shown as written (records left out: file:line and what is wrong), one per line, never markup."""

    lines: list[str]


Block = str | Table | Figure | Items | Lines

WIDTH = 10  # columns of a table at most: wider ones are split (readable at 1,280 px without scrolling sideways)


def split(t: pd.DataFrame, keys: list[str], title: str = "") -> list[Table]:
    """``t`` as tables of at most ``WIDTH`` columns, each with the ``keys`` columns that name its rows; a column no
    row fills is left out."""
    t = t[[c for c in t.columns if any(_cell(v) for v in t[c])]] if len(t) else t
    keys = [k for k in keys if k in t.columns]
    rest = [c for c in t.columns if c not in keys]
    step = max(WIDTH - len(keys), 1)
    chunks = [rest[i : i + step] for i in range(0, len(rest), step)] or [[]]
    return [Table(t[keys + chunk], title if n == 0 else "") for n, chunk in enumerate(chunks)]


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # Blocks and Sections (one level below)


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)  # Blocks and Sections

    def figures(self) -> list[Figure]:
        return list(_figures(self.blocks))

    def write(self, out: Path, markdown_name: str, html_name: str) -> None:
        """Both renderings into ``out``, with the figures' files beside them."""
        for fig in self.figures():
            (out / fig.name).write_bytes(fig.png)
        (out / markdown_name).write_text(markdown(self))
        (out / html_name).write_text(html_page(self))


def _figures(blocks: list) -> Iterable[Figure]:
    for b in blocks:
        if isinstance(b, Figure):
            yield b
        elif isinstance(b, Section):
            yield from _figures(b.blocks)


# ---- Markdown ----------------------------------------------------------------------------------------------------


def _md_value(v: object) -> str:
    if isinstance(v, Link):
        return f"[{md_text(v.text)}]({quote(v.path)})"
    if isinstance(v, list | tuple):
        return " ".join(_md_value(x) for x in v)
    return md_text(_cell(v))


def md_table(t: pd.DataFrame) -> str:
    """``t`` as a Markdown pipe table, every value escaped so that it stays in its cell. Rows are not padded to the
    widest value: the table grows with its values, not their product."""
    head = (str(c).replace("|", "\\|") for c in t.columns)  # the page's own names, shown as written
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(_md_value(v) for v in row) + " |" for row in t.itertuples(index=False)]
    return "\n".join(lines)


def _md_blocks(blocks: list, level: int) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Section):
            out += [f"{'#' * level} {md_text(b.title)}", "", *_md_blocks(b.blocks, level + 1)]
        elif isinstance(b, Table):
            if b.title:
                out += [f"{'#' * level} {md_text(b.title)}", ""]
            out += [md_table(b.frame) if len(b.frame) else "(none)", ""]
        elif isinstance(b, Figure):
            out += [f"![{md_text(b.alt)}]({quote(b.name)})", ""]
        elif isinstance(b, Items):
            out += [f"- {_md_value(item) if isinstance(item, list) else md_text(item)}" for item in b.items]
            out += [""]
        elif isinstance(b, Lines):  # an indented block: nothing in a line can end it or act as markup
            out += [*(f"    {plain(line)}" for line in b.lines), ""]
        else:
            out += [md_text(b), ""]
    return out


def markdown(doc: Document) -> str:
    return "\n".join([f"# {md_text(doc.title)}", "", *_md_blocks(doc.blocks, 2)])


# ---- HTML --------------------------------------------------------------------------------------------------------

# One stylesheet for every page: tables fit the width of a 1,280 px window (long values wrap between words; a word
# too long for any width scrolls inside its table's box, never the page), and print without the filter boxes.
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1240px;padding:0 12px;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.3em;margin-top:1.6em;border-bottom:1px solid #ccc}h3{font-size:1.05em}
table{border-collapse:collapse;font-size:12.5px;width:100%;margin:.4em 0 1em}
td,th{padding:3px 6px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top;overflow-wrap:break-word}
div.wide{overflow-x:auto}
th{background:#f4f4f4;cursor:pointer;user-select:none;white-space:normal}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
input.filter{font-size:12px;padding:2px 6px;margin:.2em 0;width:18em}
img{max-width:100%;display:block;margin:.6em 0}figure{margin:1em 0}figcaption{font-size:12px;color:#555}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px;background:#f8f8f8;padding:.5em}
li{margin:.2em 0}
@media print{input.filter{display:none}th{cursor:auto}h2{break-after:avoid}table,figure{break-inside:avoid}}
"""

# Sorting (a click on a column's head; numbers as numbers, thousands separators, $ and % ignored) and filtering (the
# rows holding the text typed) for every table: a few lines of plain DOM, no library.
SCRIPT = """
function key(t){const m=t.replace(/[,$%×x]/g,'').match(/^\\s*-?\\d+(\\.\\d+)?(e-?\\d+)?/);
 return m?parseFloat(m[0]):null}
function sortBy(th){const tb=th.closest('table').tBodies[0],i=th.cellIndex,up=!th.classList.contains('asc');
 th.parentNode.querySelectorAll('th').forEach(h=>h.classList.remove('asc','desc'));
 th.classList.add(up?'asc':'desc');
 const rows=[...tb.rows].map(r=>[r,r.cells[i]?r.cells[i].textContent:'']);
 rows.sort((a,b)=>{const x=key(a[1]),y=key(b[1]);
  const c=(x!==null&&y!==null)?x-y:(x!==null?-1:(y!==null?1:a[1].localeCompare(b[1])));return up?c:-c});
 rows.forEach(r=>tb.appendChild(r[0]))}
function filterRows(input){const q=input.value.toLowerCase();
 const tb=input.nextElementSibling.querySelector('table').tBodies[0];
 [...tb.rows].forEach(r=>{r.hidden=q!==''&&!r.textContent.toLowerCase().includes(q)})}
document.querySelectorAll('table.data th').forEach(th=>th.addEventListener('click',()=>sortBy(th)));
document.querySelectorAll('input.filter').forEach(i=>i.addEventListener('input',()=>filterRows(i)));
"""


def _html_value(v: object) -> str:
    if isinstance(v, Link):
        return f'<a href="{html.escape(quote(v.path))}">{html_text(v.text)}</a>'
    if isinstance(v, list | tuple):
        return " ".join(_html_value(x) for x in v)
    text = _cell(v)
    return f"<bdi>{html_text(text)}</bdi>" if text else ""  # <bdi>: a value's direction never reorders its row's


def html_table(t: pd.DataFrame) -> str:
    """``t`` as a sortable, filterable HTML table, every value escaped."""
    head = "".join(f"<th>{html_text(c)}</th>" for c in t.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_html_value(v)}</td>" for v in row) + "</tr>" for row in t.itertuples(index=False)
    )
    box = (
        '<input class="filter" type="search" placeholder="filter rows" aria-label="filter rows">' if len(t) > 3 else ""
    )
    table = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    return f'{box}<div class="wide">{table}</div>'


def _html_blocks(blocks: list, level: int) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Section):
            out.append(
                f"<section><h{level}>{html_text(b.title)}</h{level}>{_html_blocks(b.blocks, level + 1)}</section>"
            )
        elif isinstance(b, Table):
            title = f"<h{level}>{html_text(b.title)}</h{level}>" if b.title else ""
            out.append(title + (html_table(b.frame) if len(b.frame) else "<p>(none)</p>"))
        elif isinstance(b, Figure):
            data = base64.b64encode(b.png).decode()
            alt = html.escape(plain(b.alt))
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
            )
        elif isinstance(b, Items):
            items = "".join(f"<li>{_html_value(i) if isinstance(i, list) else html_text(i)}</li>" for i in b.items)
            out.append(f"<ul>{items}</ul>")
        elif isinstance(b, Lines):
            out.append("<pre>" + "\n".join(html_text(line) for line in b.lines) + "</pre>")
        else:
            out.append(f"<p>{html_text(b)}</p>")
    return "".join(out)


def html_page(doc: Document) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html_text(doc.title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html_text(doc.title)}</h1>{_html_blocks(doc.blocks, 2)}<script>{SCRIPT}</script></body></html>"
    )


def _cell(v: object) -> str:
    """A table cell's value as text: a gap for None and NaN."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    return str(v) if not isinstance(v, float) else f"{v:g}"
