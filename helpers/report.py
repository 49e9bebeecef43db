"""Postmortem reports: assembled from sections, exported to Markdown and HTML, redacted on the way out."""

from __future__ import annotations

import html as _html
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers._io import atomic_write_text
from helpers._paths import kit_path
from helpers.redaction import redact, redact_frame, redact_markdown

__all__ = ["Postmortem", "Section", "frame_to_markdown", "kit_path", "report_folder"]

# --- postmortem assembly ---------------------------------------------------------------------------

Block = str | pd.DataFrame


@dataclass
class Section:
    """One titled part of a report: Markdown paragraphs and tables, in order."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        """Append Markdown text or DataFrames; return the section for chaining."""
        self.blocks.extend(blocks)
        return self


NO_ROWS = "_(no rows)_"  # what a table without rows renders as: never a header over nothing
POSTMORTEM_SECTIONS = ("Summary", "Impact", "Timeline", "Root cause", "Fix", "Prevention", "Evidence")


@dataclass
class Postmortem:
    """A postmortem skeleton: title, metadata lines and the usual sections, exportable and redacted."""

    title: str
    metadata: dict[str, str] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    banner: str = ""  # Markdown shown above everything (lab mode's "these are lab twins")

    @classmethod
    def skeleton(cls, title: str, **metadata: str) -> Postmortem:
        """A postmortem with the standard sections (summary, impact, timeline, root cause, fix, ...)."""
        return cls(title, dict(metadata), [Section(name) for name in POSTMORTEM_SECTIONS])

    def section(self, title: str) -> Section:
        """The section called ``title`` (created at the end if missing)."""
        for section in self.sections:
            if section.title.lower() == title.lower():
                return section
        self.sections.append(Section(title))
        return self.sections[-1]

    def to_markdown(self) -> str:
        """The whole report as Markdown (GitHub-flavoured tables), redacted."""
        lines = [f"# {self.title}", ""]
        if self.banner:
            lines += [f"> {self.banner}", ""]
        lines += [f"- **{key}**: {value}" for key, value in self.metadata.items()]
        for section in self.sections:
            lines += ["", f"## {section.title}", ""]
            if not section.blocks:
                lines.append("_To be written._")
            for block in section.blocks:
                if isinstance(block, pd.DataFrame):
                    lines += [frame_to_markdown(block) if not block.empty else NO_ROWS, ""]
                else:
                    lines += [block.strip(), ""]
        return redact_markdown("\n".join(lines).rstrip() + "\n")

    def to_html(self) -> str:
        """The whole report as a standalone HTML page, redacted."""
        markdown2html = _markdown_renderer()
        parts = [f"<h1>{_html.escape(self.title)}</h1>"]
        if self.banner:
            parts.append(f"<div class='banner'>{markdown2html(redact_markdown(self.banner))}</div>")
        if self.metadata:
            items = "".join(
                f"<li><strong>{_html.escape(k)}</strong>: {_html.escape(str(v))}</li>"
                for k, v in self.metadata.items()
            )
            parts.append(f"<ul class='metadata'>{items}</ul>")
        for section in self.sections:
            parts.append(f"<h2>{_html.escape(section.title)}</h2>")
            if not section.blocks:
                parts.append("<p><em>To be written.</em></p>")
            for block in section.blocks:
                if isinstance(block, pd.DataFrame) and block.empty:
                    parts.append(markdown2html(NO_ROWS))
                elif isinstance(block, pd.DataFrame):
                    parts.append(redact_frame(block).to_html(index=False, escape=True, border=0, na_rep=""))
                else:
                    parts.append(markdown2html(redact_markdown(block.strip())))
        body = "\n".join(parts)
        page = _HTML_PAGE.format(title=_html.escape(self.title), body=body)
        return redact(page, html=True)

    def export(self, out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
        """Write ``<stem>.md`` and ``<stem>.html`` into ``out_dir`` atomically; return their paths."""
        out_dir = Path(out_dir)
        markdown, page = self.to_markdown(), self.to_html()  # render both before writing either
        return {
            "markdown": atomic_write_text(out_dir / f"{stem}.md", markdown),
            "html": atomic_write_text(out_dir / f"{stem}.html", page),
        }


def _markdown_renderer():
    """mistune's Markdown -> HTML with GitHub tables (raw HTML passes, as in nbconvert)."""
    import mistune

    return mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])


def _md_cell(value) -> str:
    """One Markdown table cell: text with pipes escaped and newlines flattened."""
    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return ""
    text = _html.escape(redact(str(value)), quote=False)
    return text.replace("|", "\\|").replace("\n", " ")


def frame_to_markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (no index), redacted."""
    frame = redact_frame(frame)
    header = "| " + " | ".join(_md_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; display: block; overflow-x: auto;
         max-width: 100%; }}
td {{ overflow-wrap: anywhere; }}
.banner {{ border: 2px solid #c00; background: #fff0f0; padding: 0 1rem; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
code {{ background: #f4f4f4; padding: 0 0.2rem; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _kept_clean(folder: Path) -> tuple[Path, bool]:
    """``folder``, or ``reports/interactive/`` if it is the kit's folder or its ``notebooks/``; and
    whether it was moved."""
    from helpers._paths import ROOT

    if folder.resolve() in {ROOT.resolve(), (ROOT / "notebooks").resolve()}:
        return ROOT / "reports" / "interactive", True
    return folder.resolve(), False


def report_folder(report_dir: str = "", *, output_path: str = "") -> tuple[Path, str]:
    """Where a notebook writes its report, and why (a phrase for the notebook to print).

    ``report_dir`` if given; else beside the executed notebook when papermill says where that is
    (``papermill --inject-output-path`` passes it as the ``PAPERMILL_OUTPUT_PATH`` parameter, relative
    to papermill's folder); else the kernel's working folder (under ``make report``, its output folder;
    papermill's ``--cwd`` sets it). The kit's own folder and ``notebooks/`` are never written:
    ``reports/interactive/`` stands in for them.
    """
    if report_dir:
        return Path(report_dir).expanduser().resolve(), "report_dir"
    if output_path:
        folder, moved = _kept_clean(Path(output_path).expanduser().parent)
        if moved:
            return folder, "reports/interactive/: the executed notebook is in the kit's tracked folders"
        return folder, "beside the executed notebook (papermill's PAPERMILL_OUTPUT_PATH)"
    folder, moved = _kept_clean(Path.cwd())
    if moved:
        return folder, "reports/interactive/: the kernel runs in the kit's tracked folders (JupyterLab)"
    return folder, "the kernel's working folder (make report's output folder; papermill --cwd sets it)"
