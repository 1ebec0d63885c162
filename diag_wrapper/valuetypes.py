"""Typed values for options and positionals.

A policy names a type for every value it lets through: ``unit``, ``int``,
``time``, ``enum``, ``list``, ``field_match``, ``pattern``, ``regex``,
``file`` and ``tree``. Each type checks a value and says, in one line, what it
wanted when the value does not fit. ``file`` and ``tree`` are *path* types:
the deny stage resolves them and refuses anything at or under a deny entry.
"""

import re
from typing import NamedTuple

KINDS = ("unit", "int", "time", "enum", "list", "field_match", "pattern", "regex", "file", "tree", "address", "endpoint")
PATH_KINDS = ("file", "tree")

# systemd unit names (systemd.unit(5)): letters, digits, ":-_.\" and "@" for templates.
_UNIT = re.compile(r"[A-Za-z0-9:_.@\\-]{1,255}")
_UNIT_GLOB = re.compile(r"[A-Za-z0-9:_.@\\*?\[\]-]{1,255}")
# systemd.time(7): absolute stamps, "1 hour ago", "-1h", "today", "@1700000000", zone names.
_TIME = re.compile(r"[A-Za-z0-9 :+.@,/_-]{1,64}")
# journalctl MATCHES: FIELD=VALUE, field names are upper case, digits and underscores.
_FIELD_MATCH = re.compile(r"[A-Z0-9_]{1,64}=.{0,512}", re.DOTALL)
_INT = re.compile(r"[+-]?[0-9]{1,18}")
# address: HOST[/PREFIX][:PORT] with HOST a dotted quad, [IPv6] or "*"; or :PORT (no bare numbers).
_ADDRESS = (r"(?:(?P<v4>[0-9.]{7,15})|\[(?P<v6>[0-9A-Fa-f:.]{2,45})\]|(?P<any>\*))?"
            r"(?:/(?P<prefix>[0-9]{1,3}))?(?::(?P<port>[0-9]{1,5}|\*))?")

# endpoint: an http(s) URL; which ones are allowed is the host policy's [services] probes (match.py).
_URL = (r"(?P<scheme>https?)://(?P<host>[A-Za-z0-9.-]{1,253}|\[::1\])(?::(?P<port>[0-9]{1,5}))?"
        r"(?P<path>/[A-Za-z0-9._~/:@!$&'()*+,;=%-]{0,512})(?:\?[A-Za-z0-9._~/:@!$&'()*+,;=%-]{0,512})?")
LOOPBACK = ("127.0.0.1", "[::1]", "localhost")
_COMPILED: dict[str, "re.Pattern[str]"] = {}


def _rx(pattern: str) -> "re.Pattern[str]":
    """The two big patterns above, compiled on first use (~1 ms a start-up that needs neither)."""
    rx = _COMPILED.get(pattern)
    if rx is None:
        rx = _COMPILED[pattern] = re.compile(pattern)
    return rx


_MAX_VALUE = 4096


class ValueType(NamedTuple):
    kind: str
    min: int | None = None
    max: int | None = None
    values: tuple[str, ...] = ()
    sep: str = ","
    pattern: str | None = None
    glob: bool = False

    @property
    def path_kind(self) -> str | None:
        return self.kind if self.kind in PATH_KINDS else None

    def check(self, value: str) -> str | None:
        """None if ``value`` fits, else a one-line reason."""
        if len(value) > _MAX_VALUE:
            return f"value is longer than {_MAX_VALUE} characters"
        check = getattr(self, "_check_" + self.kind)
        return check(value)

    def _check_unit(self, v: str) -> str | None:
        rx = _UNIT_GLOB if self.glob else _UNIT
        if v.startswith("-") or not rx.fullmatch(v):
            return f"{v!r} is not a systemd unit name{' or pattern' if self.glob else ''}"
        return None

    def _check_int(self, v: str) -> str | None:
        if not _INT.fullmatch(v):
            return f"{v!r} is not an integer"
        n = int(v)
        if (self.min is not None and n < self.min) or (self.max is not None and n > self.max):
            return f"{n} is outside {self.min}..{self.max}"
        return None

    def _check_time(self, v: str) -> str | None:
        if not _TIME.fullmatch(v):
            return f"{v!r} is not a time specification (e.g. '1 hour ago', '2024-05-01 10:00', 'today', '-1h')"
        return None

    def _check_enum(self, v: str) -> str | None:
        if v not in self.values:
            return f"{v!r} is not one of {_some(self.values)}"
        return None

    def _check_list(self, v: str) -> str | None:
        bad = [item for item in v.split(self.sep) if item not in self.values]
        if bad:
            return f"{bad[0]!r} is not one of {_some(self.values)} (separate several with {self.sep!r})"
        return None

    def _check_field_match(self, v: str) -> str | None:
        if not _FIELD_MATCH.fullmatch(v):
            return f"{v!r} is not a journal field match FIELD=VALUE (e.g. _SYSTEMD_UNIT=nginx.service)"
        field = v.split("=", 1)[0]
        if self.values and field not in self.values:
            # a match on a field that is never printed would still answer yes or no to a guess
            return f"{field} is not a field that can be matched through diag; use one of {_some(self.values)}"
        return None

    def _check_pattern(self, v: str) -> str | None:
        if not v:
            return "the pattern is empty"
        return None

    def _check_regex(self, v: str) -> str | None:
        assert self.pattern is not None
        if not re.fullmatch(self.pattern, v):
            return f"{v!r} does not have the expected form /{self.pattern}/"
        return None

    def _check_address(self, v: str) -> str | None:
        """A numeric address a program can parse without asking DNS, or one of ``values``."""
        if self.values and " " in v.strip(" "):
            # ss reads a quoted filter ('sport = :443') word by word: check each word, and
            # nothing else than single spaces between them, so no lexer can see another word.
            for part in v.strip(" ").split(" "):
                problem = self._check_address(part)
                if problem:
                    return problem
            return None
        import ipaddress

        if v in self.values:
            return None
        bad = (f"{v!r} is not a numeric address (1.2.3.4, 10.0.0.0/8, [::1]:443, :22) or one of the"
               " filter words (each its own word, '(' and ')' too); names are never looked up")
        # no bare numbers: after dst/src ss reads "65535" as a host name and looks it up
        m = _rx(_ADDRESS).fullmatch(v)
        if not m or not (m["v4"] or m["v6"] or m["any"] or m["port"]):
            return bad
        if m["prefix"] is not None and not m["v4"]:
            return bad  # ss reads "[V6]/N" as a service name (it opens /etc/services): no v6 prefixes
        if m["port"] not in (None, "*") and int(m["port"]) > 65535:
            return bad
        try:
            if m["v4"]:
                ipaddress.IPv4Network(f"{m['v4']}/{m['prefix'] or 32}", strict=False)
            elif m["v6"]:
                ipaddress.IPv6Network(f"{m['v6']}/{m['prefix'] or 128}", strict=False)
        except ValueError:
            return bad
        return None

    def _check_endpoint(self, v: str) -> str | None:
        if not _rx(_URL).fullmatch(v):
            return f"{v!r} is not an http(s) URL with a path (http://127.0.0.1:8282/healthz)"
        return None

    def _check_file(self, v: str) -> str | None:
        if not v or v == "-":
            return "a path is required here (standard input is not readable through diag)"
        if self.pattern is not None and not re.fullmatch(self.pattern, v):
            return f"{v!r} is not a path of the form /{self.pattern}/"
        return None

    _check_tree = _check_file

    def describe(self) -> str:
        """Short form used by help: ``INT(1..100000)``, ``one of a|b``, ``FILE``."""
        if self.kind == "int":
            return f"INT({self.min}..{self.max})"
        if self.kind == "enum":
            return "|".join(self.values)
        if self.kind == "list":
            return f"LIST of {'|'.join(self.values)} joined by {self.sep!r}"
        if self.kind == "regex" or (self.pattern and self.path_kind):
            return f"{self.kind.upper() + ':' if self.path_kind else ''}/{self.pattern}/"
        if self.kind == "unit" and self.glob:
            return "UNIT-OR-PATTERN"
        if self.kind == "endpoint":
            return "URL (a probe endpoint of this host: 'help probes')"
        if self.kind == "address":
            return "ADDRESS[/PREFIX][:PORT]" + (f" or {'|'.join(self.values)}" if self.values else "")
        return self.kind.upper().replace("_", "-")


def _some(values: tuple[str, ...], n: int = 16) -> str:
    """A long list, shortened for a one-line message (help shows it whole)."""
    if len(values) <= n:
        return ", ".join(values)
    return ", ".join(values[:n]) + f", ... ({len(values) - n} more; send 'help COMMAND')"


def endpoint(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path-and-query) of an endpoint URL, or None."""
    m = _rx(_URL).fullmatch(url)
    if not m:
        return None
    port = int(m["port"]) if m["port"] else (443 if m["scheme"] == "https" else 80)
    return m["scheme"], m["host"], port, url[m.start("path"):]


def compile_regex(pattern: str) -> None:
    """Raise ValueError if the policy's regex does not compile."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"regex {pattern!r} does not compile: {exc}") from None
