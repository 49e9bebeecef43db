"""Redaction: access key ids, secrets, session tokens, passwords, account ids and account-specific endpoint
prefixes masked in text, Markdown and executed notebooks (everything the kit exports passes through here)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from helpers._io import atomic_write_text

__all__ = [
    "holds_secret",
    "prefix_placeholder",
    "redact",
    "redact_frame",
    "redact_markdown",
    "redact_notebook",
    "redact_notebook_file",
]


def prefix_placeholder(prefix: str) -> str:
    """``<prefix-3f2a>``: a masked account endpoint prefix with a short stable tag, so two accounts'
    endpoints stay apart in a report without either prefix being readable (16 bits of its SHA-256)."""
    import hashlib

    return f"<prefix-{hashlib.sha256(prefix.lower().encode()).hexdigest()[:4]}>"


_QUOTE = r"(?:\\*[\"']|&(?:amp;)*(?:quot|#x27|#39|#34);)"  # a quote: plain, escaped, or in HTML
_UUID_HEAD = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"  # then 12 digits: no account
_PEM_BLOCK = re.compile(r"(-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----)", re.DOTALL)
_SECRET_RUN = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")

# (pattern, replacement). Placeholders are <name>; in HTML, and in Markdown outside code, they are
# written as entities (&lt;name&gt;) so that no renderer takes them for tags and hides them.
_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # Secrets and session tokens named as such: key = value, "Key": "value", KEY=value, --key value, in
    # any letter case and word joining (secretKey, AWS_SECRET_KEY, --secret-key=), quotes plain or as
    # HTML writes them (&quot; &#x27;); a value cut short by a display ('...') needs only 4 characters.
    (
        re.compile(
            r"(?P<key>(?:aws[_-]?)?secret(?:[_-]?access)?[_-]?key|(?:aws[_-]?)?session[_-]?token|"
            r"security[_-]?token|x-amz-security-token)"
            rf"(?P<sep>{_QUOTE}?\s*[:=]\s*{_QUOTE}?|\s+)"
            r"(?P<value>(?!<)(?:[A-Za-z0-9/+=%]{16,}|[A-Za-z0-9/+=%]{4,}(?=\.\.\.|…)))",
            re.IGNORECASE,
        ),
        r"\g<key>\g<sep><secret>",
    ),
    # Passwords of any length: password=, "password": "...", --password X (not prose: 'password is'; not
    # a file path such as /etc/passwd, which error messages name)
    (
        re.compile(
            rf"(?P<key>(?<![A-Za-z0-9/.\\])(?:[A-Za-z0-9]+[_-])?passw(?:or)?d{_QUOTE}?)"
            rf"(?P<sep>\s*[:=]\s*{_QUOTE}?|(?<=--password)\s+|(?<=--passwd)\s+)"
            r"(?P<value>(?!<)[^\s\"'<>&,;)\]}\\]+)",
            re.IGNORECASE,
        ),
        r"\g<key>\g<sep><secret>",
    ),
    # STS session tokens wherever they stand (they start with these base64 runs, old formats included).
    (
        re.compile(
            r"(?:IQoJb3JpZ2lu|AgoJb3JpZ2lu|FwoGZXIvYXdz|FQoGZXIvYXdz|AQoDYXdz|FQoDYXdz)[A-Za-z0-9/+=%]{16,}"
        ),
        "<secret>",
    ),
    # Credentials in URLs: scheme://user:password@host.
    (re.compile(r"(?<=://)[^/\s:@<>\"']*:[^/\s@<>\"']+@"), "<secret>@"),  # user:pw@, or :pw@
    # AWS access key ids (long-term AKIA, temporary ASIA, and the other unique-id prefixes).
    (
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?![A-Z0-9])"),
        "<access-key-id>",
    ),
    # Account-specific endpoint prefixes: <prefix>-ats.iot.<region>..., legacy <prefix>.iot...,
    # <prefix>.credentials.iot..., <prefix>.jobs.iot... (any label but AWS's own names there).
    (
        re.compile(
            r"(?<![A-Za-z0-9-])(?!(?:data|credentials|jobs)(?:-ats)?\.)[a-z0-9]{8,24}"
            r"(?=(?:-ats)?\.(?:ats\.|credentials\.|jobs\.)?iot(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com)",
            re.IGNORECASE,
        ),
        lambda match: prefix_placeholder(match.group(0)),
    ),
    # The same cut short by a truncating display (pandas' '...'): then a prefix needs a digit.
    (
        re.compile(
            r"(?<![A-Za-z0-9-])(?=[a-z0-9]*\d)[a-z0-9]{8,24}(?=-ats\b|\.(?:credentials\.|jobs\.)?iot\b)",
            re.IGNORECASE,
        ),
        lambda match: prefix_placeholder(match.group(0)),
    ),
    # Account ids inside ARNs (arn:partition:service:region:123456789012:resource), standalone
    # 12-digit numbers (also joined by '_' or '.': role_123456789012; not decimals' fractions),
    # and the console's 1234-5678-9012 form.
    (re.compile(r"(?<=:)\d{12}(?=:)"), "<account-id>"),
    (re.compile(r"(?<=%3[Aa])\d{12}(?=%3[Aa]|%2[Ff])"), "<account-id>"),  # URL-encoded ARNs
    (re.compile(rf"(?<![A-Za-z0-9])(?<!\d\.)(?<!{_UUID_HEAD})\d{{12}}(?![A-Za-z0-9])"), "<account-id>"),
    (re.compile(r"(?<![\w.-])\d{4}-\d{4}-\d{4}(?![\w-])"), "<account-id>"),
    # Local home folders: someone's user name is not for a report.
    (re.compile(r"(?<![\w.~-])/(home|Users)/(?!<user>)[^/\s'\"<>&]+"), r"/\1/<user>"),
]
_HOME = os.path.expanduser("~").rstrip("/")


def _mask_secret_run(match: re.Match[str]) -> str:
    """Mask a standalone 40-character base64 run that mixes upper case, lower case and digits."""
    run = match.group(0)
    mixed = any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
    return "<secret>" if mixed else run


def redact(text: str, *, html: bool = False) -> str:
    """Mask access key ids, secrets, account ids and account-specific endpoint prefixes in ``text``.

    Placeholders: ``<access-key-id>``, ``<secret>``, ``<account-id>``, ``<prefix-3f2a>`` (the endpoint's
    shape is kept, and a short tag per prefix keeps two accounts apart:
    ``<prefix-3f2a>-ats.iot.ap-northeast-2.amazonaws.com``); this user's home folder becomes
    ``~`` and anyone else's ``/home/<user>``. ``html=True`` writes them as
    entities (``&lt;secret&gt;``) for HTML; use :func:`redact_markdown` for Markdown.
    """
    if not text:
        return text
    if len(_HOME) > 1:  # this user's own home, wherever it is (/root, /var/lib/x): '~'
        text = re.sub(rf"(?<![\w.-]){re.escape(_HOME)}(?=/|\b)", "~", text)
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    parts = _PEM_BLOCK.split(text)  # a PEM body's 40-character last line is not a secret
    text = "".join(part if i % 2 else _SECRET_RUN.sub(_mask_secret_run, part) for i, part in enumerate(parts))
    if html:
        text = _PLACEHOLDER.sub(lambda m: f"&lt;{m.group(1)}&gt;", text)
    return text


_PLACEHOLDER = re.compile(r"<(access-key-id|secret|account-id|prefix(?:-[0-9a-f]{4})?|user)>")
_SECRET_PLACEHOLDER = re.compile(r"<(?:access-key-id|secret|account-id|prefix-[0-9a-f]{4})>")


def holds_secret(value: object) -> bool:
    """Whether :func:`redact` would mask a key, token, secret, account id or endpoint prefix in ``value``
    (text, a number, or a list or dict of them); home folders alone do not count."""
    import json

    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return len(_SECRET_PLACEHOLDER.findall(redact(text))) > len(_SECRET_PLACEHOLDER.findall(text))


_MD_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.DOTALL)


def redact_markdown(text: str) -> str:
    """:func:`redact` for Markdown: placeholders literal inside code, as entities everywhere else."""
    if not text:
        return text
    parts = _MD_CODE.split(text)
    return "".join(redact(part, html=i % 2 == 0) for i, part in enumerate(parts))


_SKIP_MIME = ("image/png", "image/jpeg", "image/gif", "application/pdf")


def _redact_value(value, how=redact):
    """Redact a notebook string or list of strings (joined first: a secret may span list items)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "".join(value)
    return how(value) if isinstance(value, str) else value


def _redact_html(text: str) -> str:
    """:func:`redact` with HTML placeholders."""
    return redact(text, html=True)


_HOW = {"text/html": _redact_html, "text/markdown": redact_markdown}


# Key names whose values are secrets whatever they look like (compared without case, '_', '-' or spaces):
# SecretAccessKey, aws_secret_access_key, secretKey, SessionToken, x-amz-security-token, password, ...
_SECRET_NAME = re.compile(r"(?:secret|secretkey|secretaccesskey|token|passw(?:or)?d|privatekey|apikey)$")


def _secret_name(key: object) -> bool:
    """Whether a JSON key names a secret (its value is masked whatever it looks like)."""
    return isinstance(key, str) and bool(_SECRET_NAME.search(re.sub(r"[\W_]", "", key).lower()))


def _redact_tree(value):
    """Everything in nested JSON redacted: strings, dict keys, 12-digit integers (account ids, as
    papermill records ``-p account 123456789012``) and any value under a secret's name (dicts in place,
    so NotebookNodes stay nodes)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int) and not isinstance(value, bool) and 10**11 <= abs(value) < 10**12:
        return "<account-id>"
    if isinstance(value, list):
        return [_redact_tree(item) for item in value]
    if isinstance(value, dict):
        items = list(value.items())
        value.clear()
        for key, item in items:
            if _secret_name(key) and isinstance(item, str | int | float) and not isinstance(item, bool):
                kept = isinstance(item, str) and (not item or _PLACEHOLDER.fullmatch(item))
                item = item if kept else "<secret>"
            else:
                item = _redact_tree(item)
            key = redact(key) if isinstance(key, str) else key
            masked, n = key, 1
            while masked in value:  # two keys masked alike stay two entries
                n += 1
                masked = f"{key} ({n})"
            value[masked] = item
    return value


def redact_notebook(nb) -> int:
    """Redact, in place, everything a notebook carries as text: sources, every output (text, tracebacks,
    every MIME type but images, JSON trees included), output and cell metadata, attachments, and the
    notebook's metadata (papermill records the parameters there); return the cells changed."""
    _redact_tree(nb.get("metadata", {}))
    changed = 0
    for cell in nb.get("cells", []):
        before = repr(cell)
        _redact_tree(cell.get("metadata", {}))
        how = redact_markdown if cell.get("cell_type") == "markdown" else redact
        cell["source"] = _redact_value(cell.get("source", ""), how)
        for bundle in cell.get("attachments", {}).values():
            _redact_data(bundle)
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = _redact_value(output["text"])
            if "traceback" in output:
                output["traceback"] = [redact(line) for line in output["traceback"]]
            if "evalue" in output:
                output["evalue"] = _redact_value(output["evalue"])
            _redact_data(output.get("data", {}))
            _redact_tree(output.get("metadata", {}))
        changed += repr(cell) != before
    return changed


def _redact_data(data: dict) -> None:
    """A MIME bundle redacted in place: text as its type needs, JSON as a tree; images left as they are."""
    for mime, value in data.items():
        if mime in _SKIP_MIME:
            continue
        data[mime] = (
            _redact_tree(value) if isinstance(value, dict) else _redact_value(value, _HOW.get(mime, redact))
        )


def redact_notebook_file(path: str | os.PathLike) -> int:
    """Redact an executed ``.ipynb`` in place (atomically); return the number of cells changed."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    original = nbformat.writes(nb)
    changed = redact_notebook(nb)
    text = nbformat.writes(nb)
    if text != original:
        atomic_write_text(path, text)
    return changed


def redact_frame(frame):
    """A copy of a DataFrame with every string cell, column name, index label and attr redacted."""
    import pandas as pd

    def _cell(value):
        return redact(value) if isinstance(value, str) else value

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(_cell)
    out.columns = [_cell(c) for c in out.columns]
    out.index = out.index.map(_cell)
    out.attrs = {k: _cell(v) for k, v in frame.attrs.items()}
    return out
