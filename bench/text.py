"""What text from outside (a record, a command line, a host's name) may hold where bench writes it, by Unicode's
categories, in one place.

A job file (a SLURM script, a Kubernetes manifest) takes no line break of any kind (everything ``str.splitlines``
breaks at: U+2028, U+2029 and U+0085 too, which YAML reads as line breaks) and no control or format character
(Unicode categories Cc, Cf, Zl, Zp: the bidi overrides and zero-width characters among them): ``plain`` refuses
them, naming the character. A terminal, REPORT.md and report.html show such characters escaped, visibly
(``shown``: ``\\u202e``), so that no value can move the cursor, reorder a line or hide in one."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

UNSAFE = ("Cc", "Cf", "Zl", "Zp")  # control, format (bidi overrides, zero-width), line and paragraph separators


def _unsafe(c: str) -> bool:
    return unicodedata.category(c) in UNSAFE


@functools.cache
def _pattern() -> re.Pattern:
    """Every unsafe character as one class, built from Unicode's database once, on first use (0.2 s)."""
    return re.compile("[" + "".join(re.escape(chr(i)) for i in range(sys.maxunicode + 1) if _unsafe(chr(i))) + "]")


BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines breaks a line (YAML at some of them too)


def first_unsafe(value: str) -> str | None:
    """The first character of ``value`` that a job file or a terminal must not take, as ``a line break (U+2028 LINE
    SEPARATOR)``; None when there is none."""
    if value.isprintable():  # no separator, control or format character: the common case, without the class
        return None
    m = _pattern().search(value)
    if m is None:
        return None
    c = m.group()
    kind = "a line break" if c in BREAKS else "a format character" if unicodedata.category(c) == "Cf" else (
        "a control character")  # fmt: skip
    name = unicodedata.name(c, "")
    return f"{kind} (U+{ord(c):04X}{' ' + name if name else ''})"


def plain(values: list[str], where: str) -> list[str]:
    """``values`` when none holds a line break, control or format character (each would start a line of its own in a
    job script or a manifest, or reorder what a reader sees); else ValueError naming the value and the character."""
    for value in values:
        if found := first_unsafe(value):
            raise ValueError(f"{where}: '{shown(value[:80])}' holds {found}: give it without")
    return values


def shown(value: str, keep: str = "") -> str:
    """``value`` with every control, format and separator character escaped visibly (``\\x1b``, ``\\u202e``); the
    characters in ``keep`` (a line break where a text is meant to have lines) stay."""
    if value.isprintable():
        return value
    return _pattern().sub(lambda m: m.group() if m.group() in keep else _escape(m.group()), value)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


# A container image reference as Docker and Kubernetes read one (name[:tag][@digest]): it starts with a letter or a
# digit, so that no image can be read as an option of the command it is given to (docker run --privileged).
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,499}")


def image(value: str, where: str) -> str:
    """``value`` when it is an image reference; else ValueError naming it and the rule."""
    if not IMAGE.fullmatch(value):
        raise ValueError(f"{where}: image '{shown(value[:80])}' is not an image reference (REGISTRY/NAME[:TAG]"
                         "[@DIGEST]: a letter or digit first, no spaces)")  # fmt: skip
    return value


def warn(message: str) -> None:
    """A warning on stderr, what a record, a file's name or a host holds shown, never obeyed (``shown``)."""
    print(f"warning: {shown(message, keep=chr(10))}", file=sys.stderr)
