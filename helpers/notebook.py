"""What the notebooks share: parameter checks, the versions line, the environment, caught failures and
exercise self-checks.

``check_parameters(mode=mode, region=region, ...)`` checks each parameter by its name and returns the
cleaned values (a single host becomes a list, "false" becomes False, paths are made absolute); a bad
value raises one ``ValueError`` naming the parameter and what to use instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

from helpers.kinds import InputError, KitError

__all__ = [
    "Caught",
    "catch",
    "check_answer",
    "check_parameters",
    "close_environment",
    "open_environment",
    "show_figure",
    "strip_outputs_before_save",
    "versions",
    "versions_line",
]

_THING = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_STEM = re.compile(r"[A-Za-z0-9._-]{1,80}")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0", "")


def _mode(name: str, value, *, modes=("lab", "live")) -> str:
    from helpers.kinds import Mode

    if value not in modes:
        raise InputError(f"{name}={value!r}: use {' or '.join(repr(m) for m in modes)}")
    return Mode(value)


def _region(name: str, value) -> str:
    from helpers.endpoints import check_region

    return check_region(value)


def _thing(name: str, value) -> str:
    if not isinstance(value, str) or not _THING.fullmatch(value):
        raise InputError(f"{name}={value!r}: use 1-128 letters, digits, ':', '_' or '-'")
    return value


def _release(name: str, value) -> str:
    from helpers import bundles

    try:
        return bundles.certifi(str(value)).version
    except ValueError as exc:
        raise InputError(f"{name}={value!r}: {exc}") from None


def _root(name: str, value) -> str:
    from helpers import bundles

    try:
        bundles.roots_matching(value)
    except ValueError as exc:
        raise InputError(f"{name}={value!r}: {exc}") from None
    return value


def _spec(name: str, value) -> str:
    from helpers.requirements import spec_path

    return spec_path(value, name=name)


def _strings(name: str, value) -> list[str]:
    if isinstance(value, str) and value.strip().startswith("["):  # papermill -p passes a list as its text
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise InputError(f'{name}={value!r}: not a list; write it as JSON: \'["a", "b"]\'') from None
    if isinstance(value, str):
        value = [value] if value.strip() else []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(
            f"{name}={value!r}: give a list of strings, e.g. ['data.iot.ap-northeast-2.amazonaws.com']"
        )
    return [v.strip() for v in value]


def _paths(name: str, value) -> list[str]:
    from helpers.requirements import spec_path

    return [spec_path(v, name=name) for v in _strings(name, value)]


def _flag(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(f"{name}={value!r}: use True or False")


def _time(name: str, value):
    from helpers.chains import parse_time

    if value in ("", None):
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise InputError(f"{name}={value!r}: {exc}") from None


def _stem(name: str, value) -> str:
    if not isinstance(value, str) or not _STEM.fullmatch(value):
        raise InputError(f"{name}={value!r}: use letters, digits, '.', '_' or '-' (a file name stem)")
    return value


def _botocore(name: str, value) -> str | None:
    if value in ("", None):
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d+)*", value.strip()):
        raise InputError(
            f"{name}={value!r}: use a botocore release like '1.23.1', or '' for the installed one"
        )
    return value.strip()


def _as_of(name: str, value):
    from helpers.requirements import parse_as_of

    if value in ("", None):
        return None
    try:
        return parse_as_of(str(value))
    except ValueError:
        raise InputError(f"{name}={value!r}: use 'YYYY-MM-DD' or an ISO 8601 time, or '' for today") from None


def _target_part(name: str, value) -> str | None:
    from helpers.requirements import Target

    if value in ("", None):
        return None
    if isinstance(value, float):  # papermill's -p makes 3.10 the float 3.1: only -r keeps the text
        raise InputError(f"{name}={value!r}: a number, not text; with papermill use -r {name} 3.12, not -p")
    if not isinstance(value, str):
        raise InputError(f"{name}={value!r}: give text, or '' for this interpreter and machine")
    try:
        Target.parse(value, None) if name == "python_version" else Target.parse(None, value)
    except ValueError as exc:
        raise InputError(f"{name}={value!r}: {exc}") from None
    return value


def _file_or_empty(name: str, value) -> str:
    from pathlib import Path

    text = _text(name, value).strip()
    if text and not Path(text).is_file():
        raise InputError(f"{name}={value!r}: no such file; give the path of a PEM file, or '' in lab mode")
    return text


def _ca_bundles(name: str, value) -> dict:
    from helpers.upgrade import parse_ca_bundles

    return parse_ca_bundles(_strings(name, value), option=name)


def _text(name: str, value) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name}={value!r}: give text")
    return value


_CHECKS = {  # parameter name -> check; names ending in _certifi or _release are certifi releases
    "mode": _mode,
    "region": _region,
    "thing_name": _thing,
    "root": _root,
    "before": _spec,
    "after": _spec,
    "endpoint_hosts": _strings,
    "chain_files": _paths,
    "at": _time,
    "incident_start": _time,
    "resolved": _time,
    "fail_on_break": _flag,
    "allow_unknown": _flag,
    "device_cert": _file_or_empty,
    "device_key": _file_or_empty,
    "root_files": _paths,
    "before_as_of": _as_of,
    "after_as_of": _as_of,
    "python_version": _target_part,
    "platform": _target_part,
    "ca_bundles": _ca_bundles,
    "report_name": _stem,
    "report_dir": _text,
    "runtime_botocore": _botocore,
    "title": _text,
}


def check_parameters(
    *, modes: tuple[str, ...] = ("lab", "live"), live_needs: tuple[str, ...] = (), **parameters
) -> SimpleNamespace:
    """Check a notebook's parameters by name; the cleaned values as attributes.

    ``modes`` are the values ``mode`` may take; ``live_needs`` names the parameters that must not be
    empty when ``mode`` is 'live' (paths a live run cannot do without). An unknown parameter name is a
    TypeError (a check is missing here, not a bad value). A parameter holding a secret gets a warning on
    stderr (by name).
    """
    checks = _CHECKS | {"mode": functools.partial(_mode, modes=modes)}
    cleaned = {}
    for name, value in parameters.items():
        if name.endswith(("_certifi", "_release")):
            check = _release
        elif name in checks:
            check = checks[name]
        else:
            raise TypeError(f"check_parameters() has no check for {name!r}")
        cleaned[name] = check(name, value)
    missing = [name for name in live_needs if cleaned.get("mode") == "live" and not cleaned.get(name)]
    if missing:
        names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
        raise InputError(f"mode='live' needs {names} (paths to PEM files); give them as parameters")
    _warn_of_secrets(parameters)
    return SimpleNamespace(**cleaned)


def _warn_of_secrets(parameters: dict) -> None:
    """One line on stderr naming the parameters that hold a secret (never the values): what the notebook
    exports is redacted, but plain papermill records parameters as given in the .ipynb it writes."""
    import sys

    from helpers.redaction import holds_secret

    named = [name for name, value in parameters.items() if holds_secret(value)]
    if named:
        print(
            f"atskit: warning: {', '.join(named)} {'holds' if len(named) == 1 else 'hold'} a key, token, "
            "account id or endpoint prefix: the exported report masks it, but plain papermill (and a saved "
            "notebook) keeps parameters as given in the .ipynb it writes; run with "
            "`papermill --engine atskit` (which redacts that copy), or `atskit redact OUT.ipynb --in-place` "
            "before sharing it",
            file=sys.stderr,
        )


def versions() -> dict[str, str]:
    """The versions that matter, as their distributions name them (python, boto3, botocore, certifi,
    cryptography, OpenSSL)."""
    import importlib.metadata
    import platform
    import ssl

    found = {"python": platform.python_version()}
    found |= {
        name: importlib.metadata.version(name) for name in ("boto3", "botocore", "certifi", "cryptography")
    }
    return found | {"OpenSSL": ssl.OPENSSL_VERSION.removeprefix("OpenSSL ")}


def versions_line() -> str:
    """'python 3.11.7  boto3 1.44.8  ...': what every notebook prints first, as a record."""
    return "  ".join(f"{name} {version}" for name, version in versions().items())


@dataclass
class Caught:
    """What a :func:`catch` block raised (``error`` is None if it raised nothing)."""

    label: str
    error: Exception | None = None

    @property
    def line(self) -> str:
        """'SSLError: SSL validation failed ...', or 'no error'."""
        if self.error is None:
            return "no error"
        return " ".join(f"{type(self.error).__name__}: {self.error}".split())


@contextmanager
def catch(label: str) -> Iterator[Caught]:
    """Run a block that may fail (the incident's code, a wrong fix): catch its exception, print
    '<label>: <error in one line>' (or 'no error'), and keep it for the next cell to check.

    The notebook goes on either way, so papermill, nbconvert, JupyterLab's Run All and ``make report``
    agree on what a run is. The kit's own refusals (``KitError``: a stopped lab, a bad value) are not
    the block's result: they go through, and stop the cell with their one-line message.
    """
    caught = Caught(label)
    try:
        yield caught
    except KitError:
        raise
    except Exception as exc:  # the point of the block: shown, kept, checked by the next cell
        caught.error = exc
    print(f"{label}: {caught.line}")


def check_answer(question: str, answer, *, expected, hint: str) -> bool | None:
    """An exercise's self-check: print whether ``answer`` is right (a hint if not); None if unanswered."""
    if answer in (None, ""):
        print(f"{question}: write your prediction above, then run this cell")
        return None
    right = str(answer).strip().lower() == str(expected).strip().lower()
    print(
        f"{question}: {'right' if right else 'not quite'} ({answer!r}){'' if right else ' - hint: ' + hint}"
    )
    return right


def show_figure(figure, *, alt: str) -> None:
    """Display a matplotlib figure as a PNG with alt text (kept in the HTML report too), then close it."""
    import base64
    import html
    import io

    import matplotlib.pyplot as plt
    from IPython.display import display

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    tag = f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'
    display(
        {"text/html": tag, "image/png": png, "text/plain": alt},
        raw=True,
        metadata={"image/png": {"alt": alt}},
    )


KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}  # as committed
LANGUAGE_INFO = {"name": "python"}  # as committed: the kernel fills in version, mimetype, ...
_KERNEL_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "papermill")


def strip_outputs_before_save(model: dict, path: str = "", **_context) -> None:
    """JupyterLab's pre-save hook for ``make lab``: a notebook in a folder named ``notebooks`` is saved
    as committed, whatever a run added: no outputs or execution counts, and the metadata the kernel
    and JupyterLab add (kernelspec display name, language_info, widget state, cell timings, scroll and
    collapse state) reset, so saving after Run All changes no byte of a committed notebook. Other files
    (Markdown, an executed copy under ``reports/``) are saved as they are."""
    from pathlib import PurePosixPath

    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    if path and PurePosixPath(path.replace("\\", "/")).parent.name != "notebooks":
        return
    content = model["content"]
    metadata = content.setdefault("metadata", {})
    metadata.pop("widgets", None)
    metadata.pop("papermill", None)
    metadata["kernelspec"], metadata["language_info"] = dict(KERNELSPEC), dict(LANGUAGE_INFO)
    for cell in content.get("cells", []):
        for key in _KERNEL_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
        jupyter = cell.get("metadata", {}).get("jupyter", {})
        jupyter.pop("outputs_hidden", None)
        if "jupyter" in cell.get("metadata", {}) and not jupyter:
            del cell["metadata"]["jupyter"]
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None


_opened: list = []  # the ExitStack of the environment open_environment() entered in this kernel


def open_environment(mode: str, *, region: str, thing_name: str, session=None):
    """``lab.environment(mode, ...)``, entered for the rest of the notebook (its last cell calls
    :func:`close_environment`). Running the cell again first closes the environment it opened before,
    so a re-run never leaves a second lab behind."""
    from contextlib import ExitStack

    from helpers import lab

    close_environment()
    stack = ExitStack()
    env = stack.enter_context(lab.environment(mode, region=region, thing_name=thing_name, session=session))
    _opened.append(stack)
    return env


def close_environment() -> None:
    """Close what :func:`open_environment` opened: stop the lab, restore names, credentials, variables."""
    while _opened:
        _opened.pop().close()
