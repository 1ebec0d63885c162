"""The policy: TOML data, validated strictly when it loads.

Anything the loader does not understand (an unknown key, a wrong type, a
relative deny entry, an unknown value type, an include cycle) is a
``PolicyError``; the caller then denies every command. See README.md,
"Policy format", for the schema.
"""

import os
import re
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

from .model import InsecurePolicy, PolicyError
from .redact import Pattern, compile_pattern, mask
from .valuetypes import KINDS, LOOPBACK, PATH_KINDS, ValueType, compile_regex, endpoint

DEFAULT_POLICY = "/etc/diag-wrapper/policy.toml"
SANDBOX_MODES = ("required", "auto", "off")
VALUE_MODES = ("required", "attached", "next-if-valid")
OPTION_STYLES = ("gnu", "leading")
_MAX_INCLUDE_DEPTH = 4
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_COMMAND_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]*")
_SUBCOMMAND_WORD = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OPTION_NAME = re.compile(r"-[A-Za-z0-9]|--?[A-Za-z0-9][A-Za-z0-9_.-]+")


class DenyEntry(NamedTuple):
    """One ``[[deny]]`` entry: an absolute path, ``*`` allowed within components.

    ``wall_except``: commands for which the kernel wall leaves it uncovered, because they
    read it themselves through their own typed interface (journalctl and systemctl read
    the journal files; no path value given to any command reaches them).
    """

    path: str
    why: str
    wall_except: tuple[str, ...] = ()


def validate_entry(path: str) -> None:
    """Raise ValueError, saying what is wrong, unless ``path`` is a usable deny entry."""
    if not isinstance(path, str) or not path:
        raise ValueError("deny entry must be a non-empty string")
    if _CONTROL.search(path):
        raise ValueError(f"deny entry {path!r} contains a control character or NUL")
    if not path.startswith("/"):
        raise ValueError(f"deny entry {path!r} must be an absolute path")
    if path == "/":
        raise ValueError("deny entry '/' would deny everything; name the secret locations")
    if path.endswith("/"):
        raise ValueError(f"deny entry {path!r} must not end with '/'")
    if "//" in path:
        raise ValueError(f"deny entry {path!r} contains '//'; write it normalised")
    for comp in path.split("/")[1:]:
        if comp in (".", ".."):
            raise ValueError(f"deny entry {path!r} contains {comp!r}; write it normalised")
        if "**" in comp:
            raise ValueError(f"deny entry {path!r}: '**' is not recursive here; use one '*'")
    for ch in "?[]{}":
        if ch in path:
            raise ValueError(
                f"deny entry {path!r} contains {ch!r}; only '*' within a component is supported"
            )


class Option(NamedTuple):
    names: tuple[str, ...]
    value: ValueType | None = None  # None: a flag
    value_mode: str = "required"  # how a value is found: see README
    recursive: bool = False  # turns this command's file arguments into trees
    help: str = ""
    drop: bool = False  # accepted as a habit and not passed on (journalctl -x); help says why


class ArgSlot(NamedTuple):
    name: str
    type: ValueType
    min: int
    max: int


class Default(NamedTuple):
    """Arguments added unless the agent gave one of ``unless`` (and, with ``when_option``,
    only when that option was given one of ``when_values``): ``journalctl -o json`` gets
    the safe ``--output-fields``, a bare ``systemctl show`` a safe ``--property`` list."""

    add: tuple[str, ...]
    unless: tuple[str, ...]
    when_option: str | None = None
    when_values: tuple[str, ...] = ()


class Form(NamedTuple):
    """The options and positionals accepted by a command or one subcommand."""

    summary: str = ""
    options: tuple[Option, ...] = ()
    args: tuple[ArgSlot, ...] = ()
    defaults: tuple[Default, ...] = ()
    no_args_with: tuple[str, ...] = ()  # options after which no positional is accepted


class Command(NamedTuple):
    name: str
    form: Form  # global options (and the positionals when there are no subcommands)
    subcommands: Mapping[tuple[str, ...], Form]
    forced_args: tuple[str, ...] = ()
    env: Mapping[str, str] = MappingProxyType({})
    timeout: int | None = None
    option_style: str = "gnu"
    short_clusters: bool = True
    index: Mapping[str, Option] = MappingProxyType({})  # every option name it knows
    reads: str = "names"  # "content": its path values must be regular files or directories
    memory_mb: int | None = None  # RLIMIT_DATA, overrides settings.memory_mb
    max_output_bytes: int | None = None  # overrides settings.max_output_bytes
    redact: bool = True  # its output goes through the redaction net (README "The redaction net")
    default_subcommand: tuple[str, ...] = ()  # run when no subcommand is given (systemctl -> list-units)
    aliases: Mapping[tuple[str, ...], tuple[str, ...]] = MappingProxyType({})  # ip a -> address show


class Instead(NamedTuple):
    """``[instead."podman logs"]``: what a denial of that form says to run instead. ``run``
    is a command the policy allows (lint and the tests check it)."""

    run: str
    why: str


class Probe(NamedTuple):
    """A health endpoint of a service (``[services.NAME] probes``): the one URL curl may ask.
    ``connect``: the loopback address a URL with one of the host's own names is pinned to."""

    url: str
    connect: str | None = None


class Service(NamedTuple):
    """``[services.NAME]``: where a service of this host logs and how to probe it, for
    ``help`` (its recipe) and curl (its probes). ``commands`` are checked by lint."""

    summary: str
    units: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    probes: tuple[Probe, ...] = ()
    commands: tuple[str, ...] = ()
    notes: str = ""


class Report(NamedTuple):
    """``[reports.NAME]``: a fixed collector root runs on request (``report NAME``). Its command
    is in the host's configuration, not here: the policy names only the socket to ask."""

    summary: str
    socket: str
    timeout: int = 30  # the collector's own limit (its unit enforces it; the wrapper waits a little longer)
    max_output_bytes: int = 1 << 20


class Example(NamedTuple):
    command: str
    decision: str
    code: str | None = None


class Settings(NamedTuple):
    search_path: tuple[str, ...] = ("/run/current-system/sw/bin",)
    max_command_bytes: int = 4096
    timeout: int = 60
    sandbox: str = "auto"
    persist_roots: tuple[str, ...] = ()
    kernel_readable: tuple[str, ...] = ()  # files under /proc and /sys content readers may read
    memory_mb: int = 512  # RLIMIT_DATA of every command (heap and private mappings, not file maps)
    max_output_bytes: int = 8 << 20  # what reaches the client (stdout + stderr) before the cut
    max_tasks: int = 64  # RLIMIT_NPROC: processes of the diag user at once
    max_concurrent: int = 4  # commands running at once on this host (slots in state_dir)
    rate_per_minute: int = 120  # decisions per login key per minute before limit.rate
    state_dir: str = "/run/diag-wrapper"  # slots and rate counters (root-made, diag-writable)


class Policy(NamedTuple):
    settings: Settings
    commands: Mapping[str, Command]
    deny: tuple[DenyEntry, ...]
    examples: tuple[Example, ...]
    sources: tuple[str, ...]  # files read, in load order
    filters: Mapping[str, Command] = MappingProxyType({})  # what may follow '|': standard input only
    redact: tuple[Pattern, ...] = ()  # the redaction net, in policy order
    redact_max_line: int = 1 << 16  # bytes of one line the net holds before it cuts the line
    instead: Mapping[str, "Instead"] = MappingProxyType({})  # what to run instead of a refused form
    services: Mapping[str, Service] = MappingProxyType({})  # recipes and probe endpoints
    reports: Mapping[str, Report] = MappingProxyType({})  # fixed root-only collectors, by name

    def probe(self, url: str) -> Probe | None:
        """The policy's probe for exactly this URL, if it lists one."""
        for s in self.services.values():
            for p in s.probes:
                if p.url == url:
                    return p
        return None


# --------------------------------------------------------------------------- helpers


def _fail(where: str, msg: str) -> PolicyError:
    return PolicyError(f"{where}: {msg}")


def _keys(where: str, table: Any, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(table, dict):
        raise _fail(where, f"expected a table, got {type(table).__name__}")
    if table.keys() <= allowed and required <= table.keys():  # the usual case, without building messages
        return table
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(table))
    if missing:
        raise _fail(where, f"missing key(s) {', '.join(missing)}")
    return table


def _typed(where: str, value: Any, typ: type | tuple[type, ...], what: str) -> Any:
    # bool is an int in Python; never accept it where an int is meant.
    if isinstance(value, bool) and typ is not bool:
        raise _fail(where, f"expected {what}, got a boolean")
    if not isinstance(value, typ):
        raise _fail(where, f"expected {what}, got {type(value).__name__}")
    return value


def _str_list(where: str, value: Any) -> tuple[str, ...]:
    _typed(where, value, list, "a list of strings")
    for i, item in enumerate(value):
        _typed(f"{where}[{i}]", item, str, "a string")
    return tuple(value)


def _int(where: str, value: Any, lo: int, hi: int) -> int:
    _typed(where, value, int, "an integer")
    if not lo <= value <= hi:
        raise _fail(where, f"{value} is outside {lo}..{hi}")
    return value


# --------------------------------------------------------------------------- value types

_TYPE_KEYS = {
    "unit": {"glob"},
    "int": {"min", "max"},
    "time": set(),
    "enum": {"values"},
    "list": {"values", "sep"},
    "field_match": {"fields"},
    "pattern": set(),
    "regex": {"pattern"},
    "file": {"pattern"},
    "tree": {"pattern"},
    "address": {"words"},
    "endpoint": set(),
}


def _value_type(where: str, spec: Any, named: Mapping[str, ValueType]) -> ValueType:
    if isinstance(spec, str):
        if spec in named:
            return named[spec]
        if spec in KINDS and (spec in PATH_KINDS or not ({"min", "max", "values", "pattern"} & _TYPE_KEYS[spec])):
            return ValueType(kind=spec)
        if spec in KINDS:
            raise _fail(where, f"type {spec!r} needs parameters: write {{ type = {spec!r}, ... }}")
        raise _fail(where, f"unknown value type {spec!r} (built in: {', '.join(KINDS)}; or define it under [types])")
    table = _keys(where, spec, {"type"} | set().union(*_TYPE_KEYS.values()), {"type"})
    kind = _typed(f"{where}.type", table["type"], str, "a string")
    if kind not in KINDS:
        raise _fail(where, f"unknown value type {kind!r} (built in: {', '.join(KINDS)})")
    _keys(where, table, {"type"} | _TYPE_KEYS[kind])
    if kind == "int":
        if "min" not in table or "max" not in table:
            raise _fail(where, "an int needs both min and max")
        lo = _int(f"{where}.min", table["min"], -(10**18), 10**18)
        hi = _int(f"{where}.max", table["max"], -(10**18), 10**18)
        if lo > hi:
            raise _fail(where, f"min {lo} is greater than max {hi}")
        return ValueType(kind, min=lo, max=hi)
    if kind in ("enum", "list"):
        values = _str_list(f"{where}.values", table.get("values"))
        if not values or any(not v for v in values):
            raise _fail(where, "values must be a non-empty list of non-empty strings")
        sep = _typed(f"{where}.sep", table.get("sep", ","), str, "a string")
        if kind == "list" and len(sep) != 1:
            raise _fail(where, "sep must be one character")
        return ValueType(kind, values=values, sep=sep)
    if kind == "regex" or (kind in PATH_KINDS and "pattern" in table):
        pattern = _typed(f"{where}.pattern", table.get("pattern"), str, "a string")
        try:
            compile_regex(pattern)
        except ValueError as exc:
            raise _fail(where, str(exc)) from None
        return ValueType(kind, pattern=pattern)
    if kind == "unit":
        return ValueType(kind, glob=_typed(f"{where}.glob", table.get("glob", False), bool, "a boolean"))
    if kind == "field_match":
        if "fields" not in table:
            return ValueType(kind)
        ref = _typed(f"{where}.fields", table["fields"], str, "the name of a list type")
        t = named.get(ref)
        if t is None or t.kind != "list":
            raise _fail(where, f"fields must name a list type under [types], got {ref!r}")
        return ValueType(kind, values=t.values)
    if kind == "address":
        return ValueType(kind, values=_str_list(f"{where}.words", table.get("words", [])))
    return ValueType(kind)


# --------------------------------------------------------------------------- commands


def _option(where: str, table: Any, named: Mapping[str, ValueType]) -> Option:
    _keys(where, table, {"names", "value", "value_mode", "recursive", "help", "drop"}, {"names"})
    names = _str_list(f"{where}.names", table["names"])
    if not names:
        raise _fail(where, "names must not be empty")
    for name in names:
        if not _OPTION_NAME.fullmatch(name):
            raise _fail(where, f"{name!r} is not an option name (-x, --long or -long)")
    value = _value_type(f"{where}.value", table["value"], named) if "value" in table else None
    mode = _typed(f"{where}.value_mode", table.get("value_mode", "required"), str, "a string")
    if mode not in VALUE_MODES:
        raise _fail(where, f"value_mode must be one of {', '.join(VALUE_MODES)}")
    if value is None and "value_mode" in table:
        raise _fail(where, "value_mode needs a value type")
    recursive = _typed(f"{where}.recursive", table.get("recursive", False), bool, "a boolean")
    if recursive and value is not None:
        raise _fail(where, "recursive is for flags")
    help_ = _typed(f"{where}.help", table.get("help", ""), str, "a string")
    drop = _typed(f"{where}.drop", table.get("drop", False), bool, "a boolean")
    if drop and (value is not None or recursive or not help_):
        raise _fail(where, "drop is for flags, and help must say why it is not passed on")
    return Option(names=names, value=value, value_mode=mode, recursive=recursive, help=help_, drop=drop)


def _args(where: str, spec: Any, named: Mapping[str, ValueType]) -> tuple[ArgSlot, ...]:
    _typed(where, spec, list, "a list of argument slots")
    slots = []
    for i, table in enumerate(spec):
        w = f"{where}[{i}]"
        _keys(w, table, {"name", "type", "min", "max"}, {"name", "type"})
        name = _typed(f"{w}.name", table["name"], str, "a string")
        typ = _value_type(f"{w}.type", table["type"], named)
        lo = _int(f"{w}.min", table.get("min", 0), 0, 256)
        hi = _int(f"{w}.max", table.get("max", 1), 1, 256)
        if lo > hi:
            raise _fail(w, f"min {lo} is greater than max {hi}")
        slots.append(ArgSlot(name, typ, lo, hi))
    return tuple(slots)


_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(where: str, word: str, named: Mapping[str, ValueType]) -> str:
    """``{TYPE}`` in an added word is that list/enum type's values joined by its separator,
    so a safe list is written once (the type) and used twice (check and default)."""

    def sub(m: re.Match) -> str:
        t = named.get(m.group(1))
        if t is None or t.kind not in ("list", "enum"):
            raise _fail(where, f"{{{m.group(1)}}} must name a list or enum type under [types]")
        return t.sep.join(t.values)

    return _TEMPLATE.sub(sub, word)


def _defaults(where: str, spec: Any, named: Mapping[str, ValueType]) -> tuple[Default, ...]:
    out = []
    for i, table in enumerate(_typed(where, spec, list, "a list of [[defaults]] tables")):
        w = f"{where}[{i}]"
        _keys(w, table, {"add", "unless", "when"}, {"add", "unless"})
        add = tuple(_expand(w, a, named) for a in _str_list(f"{w}.add", table["add"]))
        unless = _str_list(f"{w}.unless", table["unless"])
        if not add or not unless:
            raise _fail(w, "add and unless must not be empty")
        opt, values = None, ()
        if "when" in table:
            when = _keys(f"{w}.when", table["when"], {"option", "values"}, {"option", "values"})
            opt = _typed(f"{w}.when.option", when["option"], str, "a string")
            values = _str_list(f"{w}.when.values", when["values"])
        out.append(Default(add, unless, opt, values))
    return tuple(out)


def _form(where: str, table: Any, named: Mapping[str, ValueType], extra: set[str]) -> Form:
    _keys(where, table, {"summary", "options", "args", "defaults", "no_args_with"} | extra)
    summary = _typed(f"{where}.summary", table.get("summary", ""), str, "a string")
    raw_opts = _typed(f"{where}.options", table.get("options", []), list, "a list of options")
    options = tuple(_option(f"{where}.options[{i}]", o, named) for i, o in enumerate(raw_opts))
    args = _args(f"{where}.args", table.get("args", []), named)
    return Form(summary, options, args, _defaults(f"{where}.defaults", table.get("defaults", []), named),
                _str_list(f"{where}.no_args_with", table.get("no_args_with", [])))


def _command(name: str, table: Any, named: Mapping[str, ValueType], where: str = "") -> Command:
    where = where or f"commands.{name}"
    if not _COMMAND_NAME.fullmatch(name):
        raise _fail(where, "a command is named by its bare program name (no '/')")
    if name in ("help", "report"):
        raise _fail(where, f"{name!r} is the wrapper's own command")
    extra = {"subcommands", "forced_args", "env", "timeout", "option_style", "short_clusters", "reads", "memory_mb",
             "max_output_bytes", "redact", "default_subcommand"}
    form = _form(where, table, named, extra)
    subs: dict[tuple[str, ...], Form] = {}
    aliases: dict[tuple[str, ...], tuple[str, ...]] = {}
    raw_subs = table.get("subcommands", {})
    _typed(f"{where}.subcommands", raw_subs, dict, "a table of subcommands")
    for key, sub in raw_subs.items():
        words = tuple(key.split(" "))
        if not all(_SUBCOMMAND_WORD.fullmatch(w) for w in words):
            raise _fail(f"{where}.subcommands", f"{key!r} is not a subcommand name")
        if isinstance(sub, dict) and "same_as" in sub:  # `ip a`: the real tool's abbreviation of `ip address show`
            _keys(f"{where}.subcommands.{key}", sub, {"same_as"})
            aliases[words] = tuple(_typed(f"{where}.subcommands.{key}.same_as", sub["same_as"], str, "a string").split(" "))
            continue
        subs[words] = _form(f"{where}.subcommands.{key}", sub, named, set())
    for words, target in aliases.items():
        if target not in subs:
            raise _fail(f"{where}.subcommands.{' '.join(words)}", f"same_as {' '.join(target)!r} is not a subcommand")
        subs[words] = subs[target]
    if subs and form.args:
        raise _fail(where, "a command with subcommands takes its positionals per subcommand")
    default_sub = tuple(_typed(f"{where}.default_subcommand", table.get("default_subcommand", ""), str,
                               "a string").split())
    if default_sub and (default_sub not in subs or default_sub in aliases):
        raise _fail(where, f"default_subcommand {' '.join(default_sub)!r} is not one of its subcommands")
    env = _typed(f"{where}.env", table.get("env", {}), dict, "a table of strings")
    for k, v in env.items():
        if not _ENV_NAME.fullmatch(k):
            raise _fail(f"{where}.env", f"{k!r} is not an environment variable name")
        _typed(f"{where}.env.{k}", v, str, "a string")
    timeout = table.get("timeout")
    if timeout is not None:
        _int(f"{where}.timeout", timeout, 1, 86400)
    style = _typed(f"{where}.option_style", table.get("option_style", "gnu"), str, "a string")
    if style not in OPTION_STYLES:
        raise _fail(where, f"option_style must be one of {', '.join(OPTION_STYLES)}")
    clusters = _typed(f"{where}.short_clusters", table.get("short_clusters", True), bool, "a boolean")
    index: dict[str, Option] = {}
    for f in (form, *subs.values()):
        for opt in f.options:
            for n in opt.names:
                if clusters and n.startswith("-") and not n.startswith("--") and len(n) != 2:
                    raise _fail(where, f"{n!r}: single-dash long options need short_clusters = false")
                seen = index.get(n)
                if seen is not None and (seen.value is None) != (opt.value is None):
                    # The real tool parses its options before it knows the subcommand: one arity per name.
                    raise _fail(where, f"{n!r} is a flag in one place and takes a value in another")
                index[n] = seen or opt
    for f in (form, *subs.values()):
        for d in f.defaults:
            for n in (*d.unless, *((d.when_option,) if d.when_option else ())):
                if n not in index:
                    raise _fail(where, f"defaults: {n!r} is not one of this command's options")
        for n in f.no_args_with:
            if n not in index:
                raise _fail(where, f"no_args_with: {n!r} is not one of this command's options")
    reads = _typed(f"{where}.reads", table.get("reads", "names"), str, "a string")
    if reads not in ("names", "content"):
        raise _fail(where, "reads must be 'names' or 'content'")
    memory = table.get("memory_mb")
    if memory is not None:
        _int(f"{where}.memory_mb", memory, 16, 65536)
    return Command(
        name=name,
        form=form,
        subcommands=MappingProxyType(subs),
        forced_args=_str_list(f"{where}.forced_args", table.get("forced_args", [])),
        env=MappingProxyType(dict(env)),
        timeout=timeout,
        option_style=style,
        short_clusters=clusters,
        index=MappingProxyType(index),
        reads=reads,
        memory_mb=memory,
        max_output_bytes=None if table.get("max_output_bytes") is None else
        _int(f"{where}.max_output_bytes", table["max_output_bytes"], 4096, 1 << 30),
        redact=_typed(f"{where}.redact", table.get("redact", True), bool, "a boolean"),
        default_subcommand=default_sub,
        aliases=MappingProxyType(aliases),
    )


_FILTER_KEYS = frozenset({"summary", "options", "args", "defaults", "no_args_with", "forced_args", "option_style",
                          "short_clusters", "subcommands"})


def _filter(name: str, table: Any, named: Mapping[str, ValueType]) -> Command:
    """A filter: a command that may follow '|' and reads only its standard input. So no
    value of it may be a path, nothing recursive (grep -r with no operand walks '.'), and
    the limits are the pipeline's (its first command's)."""
    where = f"filters.{name}"
    _keys(where, table, set(_FILTER_KEYS))
    cmd = _command(name, table, named, where)
    for opt in cmd.index.values():
        if opt.recursive or (opt.value is not None and opt.value.path_kind):
            raise _fail(where, f"{opt.names[0]} names a path or recurses; a filter reads only standard input")
    for slot in (s for f in (cmd.form, *cmd.subcommands.values()) for s in f.args):
        if slot.type.path_kind:
            raise _fail(where, f"argument {slot.name} is a path; a filter reads only standard input")
    return cmd


def _redaction(where: str, table: Any, out: dict[str, Pattern], examples: bool = True) -> int | None:
    """``[redact]``: ``max_line_bytes`` and ``patterns.NAME``; each pattern's ``examples``
    must come out masked and its ``keeps`` unchanged, or the policy does not load."""
    _keys(where, table, {"max_line_bytes", "patterns"})
    max_line = None if "max_line_bytes" not in table else _int(f"{where}.max_line_bytes", table["max_line_bytes"],
                                                              4096, 1 << 20)
    for name, spec in _typed(f"{where}.patterns", table.get("patterns", {}), dict, "a table of patterns").items():
        w = f"{where}.patterns.{name}"
        if not _COMMAND_NAME.fullmatch(name):
            raise _fail(w, "a pattern is named in lower case: letters, digits, '-'")
        _keys(w, spec, {"regex", "begin", "end", "hints", "examples", "keeps", "why"}, {"hints", "examples", "why"})
        text = {k: _typed(f"{w}.{k}", spec[k], str, "a string") for k in ("regex", "begin", "end") if k in spec}
        try:
            p = compile_pattern(name, hints=_str_list(f"{w}.hints", spec["hints"]), **text)
        except ValueError as exc:
            raise _fail(w, str(exc)) from None
        _typed(f"{w}.why", spec["why"], str, "a string")
        shown = _str_list(f"{w}.examples", spec["examples"])
        if not shown:
            raise _fail(w, "examples must show at least one text the pattern masks")
        for e in shown if examples else ():
            masked, counts = mask((p,), e.encode())
            if not counts.get(name):
                raise _fail(w, f"example {e!r} is not masked by this pattern (regex or hints wrong)")
        for k in _str_list(f"{w}.keeps", spec.get("keeps", [])) if examples else ():
            if mask((p,), k.encode())[1]:
                raise _fail(w, f"keeps {k!r} is masked by this pattern")
        out[name] = p
    return max_line


def _service(where: str, name: str, spec: Any) -> Service:
    if not _COMMAND_NAME.fullmatch(name):
        raise _fail(where, "a service is named in lower case: letters, digits, '.', '_', '+', '-'")
    _keys(where, spec, {"summary", "units", "containers", "probes", "commands", "notes"}, {"summary"})
    probes = []
    for i, p in enumerate(_typed(f"{where}.probes", spec.get("probes", []), list, "a list of URLs")):
        w = f"{where}.probes[{i}]"
        table = _keys(w, {"url": p} if isinstance(p, str) else p, {"url", "connect"}, {"url"})
        url = _typed(f"{w}.url", table["url"], str, "a string")
        connect = table.get("connect")
        parts = endpoint(url)
        if parts is None:
            raise _fail(w, f"{url!r} is not an http(s) URL with a path")
        if connect is None and parts[1] not in LOOPBACK:
            raise _fail(w, f"{parts[1]!r} is not loopback: pin the host's own name with connect = \"127.0.0.1\"")
        if connect is not None and (_typed(f"{w}.connect", connect, str, "a string") not in ("127.0.0.1", "::1")
                                    or parts[1] in LOOPBACK or parts[1].startswith("[")):
            raise _fail(w, "connect pins one of the host's own names to 127.0.0.1 or ::1")
        probes.append(Probe(url, connect))
    text = {k: _typed(f"{where}.{k}", spec.get(k, ""), str, "a string") for k in ("summary", "notes")}
    if _CONTROL.search(text["summary"]):
        raise _fail(where, "summary must be one line")
    return Service(text["summary"], _str_list(f"{where}.units", spec.get("units", [])),
                   _str_list(f"{where}.containers", spec.get("containers", [])), tuple(probes),
                   _str_list(f"{where}.commands", spec.get("commands", [])), text["notes"])


_REPORT_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


def _report(where: str, name: str, spec: Any) -> Report:
    if not _REPORT_NAME.fullmatch(name):
        raise _fail(where, "a report is named in lower case: a letter, then letters, digits and '-' (40 at most)")
    _keys(where, spec, set(Report._fields), {"summary", "socket"})
    summary = _typed(f"{where}.summary", spec["summary"], str, "a string")
    sock = _typed(f"{where}.socket", spec["socket"], str, "a string")
    if _CONTROL.search(summary) or not summary:
        raise _fail(where, "summary must be one line")
    if sock != f"/run/diag-reports/{name}.sock":
        raise _fail(f"{where}.socket", f"{sock!r} must be /run/diag-reports/{name}.sock (the socket unit"
                    " services.diag.reports makes; root's directory, so nobody else can put a socket there)")
    d = Report._field_defaults
    return Report(summary, sock, _int(f"{where}.timeout", spec.get("timeout", d["timeout"]), 1, 600),
                  _int(f"{where}.max_output_bytes", spec.get("max_output_bytes", d["max_output_bytes"]), 1, 1 << 30))


# --------------------------------------------------------------------------- files


_SEAL = b'{"sealed": "'


def _validator() -> bytes:
    """What a seal vouches for: the source of the code that validates a policy. A wrapper
    whose checks differ in any way does not trust another's seal."""
    import hashlib

    import sys

    h = hashlib.sha256(sys.version.encode())  # another interpreter's re may read a regex otherwise
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("policy", "valuetypes", "redact", "model"):
        with open(os.path.join(here, name + ".py"), "rb") as fh:
            h.update(fh.read())
    return h.digest()


def _seal(text: str) -> str:
    """``render``'s JSON with a first member that vouches this validator passed all of it."""
    import hashlib

    if text.strip() == "{}":
        return text  # nothing to vouch for
    body = text[1:].encode()
    return '{"sealed": "' + hashlib.sha256(_validator() + body).hexdigest() + '",' + text[1:]


def sealed(raw: bytes) -> bool:
    """The file is ``render``'s output from this very validator, unchanged since."""
    import hashlib

    if not raw.startswith(_SEAL) or raw[len(_SEAL) + 64:len(_SEAL) + 66] != b'",':
        return False
    digest = raw[len(_SEAL):len(_SEAL) + 64]
    try:
        want = hashlib.sha256(_validator() + raw[len(_SEAL) + 66:]).hexdigest().encode()
    except OSError:
        return False
    import hmac

    return hmac.compare_digest(digest, want)


def _read(path: str, root_only: bool = False) -> dict:
    """A policy file: TOML, or (``*.json``) the same data as JSON, which ``render`` writes
    and which loads without tomllib (~17 ms of a wrapper's start-up; README "Performance").
    A sealed JSON file (``render``'s, see :func:`sealed`) comes back with ``"sealed": True``."""
    try:
        with open(path, "rb") as fh:
            if root_only:
                _check_owner(path, os.fstat(fh.fileno()))
            raw = fh.read()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc.strerror or exc}") from None
    if path.endswith(".json"):
        data = _json(path, raw)
        if "sealed" in data:
            data["sealed"] = sealed(raw)
        return data
    import tomllib

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    if "sealed" in data:
        raise PolicyError(f"{path}: 'sealed' is written by 'diag-wrapper render' into JSON only")
    return data


def _json(path: str, raw: bytes) -> dict:
    """JSON as strict as TOML: no duplicate keys, no NaN or Infinity, an object at the top."""
    import json

    def pairs(items: list[tuple[str, Any]]) -> dict:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a policy value")

    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: not valid JSON: the policy must be an object")
    return data


def _check_owner(path: str, st: os.stat_result) -> None:
    """As doas refuses a config root does not own: in ForceCommand mode every policy file must
    be root's and writable by nobody else, or whoever can write it decides what runs."""
    if st.st_uid != 0 or st.st_mode & 0o022:
        who = f"owned by uid {st.st_uid}" if st.st_uid != 0 else "writable by group or others"
        raise InsecurePolicy(f"{path}: the policy file is {who}; every command is denied until it is"
                             f" root's and writable only by root (chown root {path}; chmod go-w {path})")


def _collect(path: str, stack: tuple[str, ...], out: list[tuple[str, dict]], root_only: bool = False) -> None:
    real = os.path.realpath(path)
    if real in stack:
        raise PolicyError(f"{path}: include cycle ({' -> '.join(stack + (real,))})")
    if len(stack) > _MAX_INCLUDE_DEPTH:
        raise PolicyError(f"{path}: includes nest deeper than {_MAX_INCLUDE_DEPTH}")
    data = _read(path, root_only)
    _keys(path, data, {"include", "settings", "types", "deny", "commands", "filters", "redact", "instead", "examples",
                       "services", "reports", "sealed"})
    for inc in _str_list(f"{path}: include", data.get("include", [])):
        target = inc if os.path.isabs(inc) else os.path.join(os.path.dirname(path), inc)
        _collect(target, stack + (real,), out, root_only)
    out.append((path, data))


def load(path: str, root_only: bool = False) -> Policy:
    """Load ``path`` and its includes; raise PolicyError on anything unexpected.

    ``root_only`` (ForceCommand mode): every file must be root's and not group/other
    writable, or InsecurePolicy. Then a policy ``render`` sealed (one file, this validator,
    unchanged) is validated in full already: its commands and filters are checked and built
    when first asked for, and its redaction examples are not run again (README
    "Performance"). Anything else is validated in full here."""
    files: list[tuple[str, dict]] = []
    _collect(path, (), files, root_only)
    lazy = root_only and len(files) == 1 and files[0][1].get("sealed") is True
    return _build(path, files, lazy)


_MERGED = ("settings", "types", "commands", "filters", "instead", "services", "reports")  # later keys replace earlier ones


def render(path: str) -> str:
    """``path`` and its includes as one JSON document that loads to the same policy (its
    ``sources`` aside): what ``diag-wrapper render`` prints and the NixOS module installs.
    Raises PolicyError if the policy is invalid, or if the result would load differently."""
    import json

    files: list[tuple[str, dict]] = []
    _collect(path, (), files)
    out: dict[str, Any] = {}
    for _, data in files:
        for key in _MERGED:
            if key in data:
                out.setdefault(key, {}).update(data[key])
        for key in ("deny", "examples"):
            out.setdefault(key, []).extend(data.get(key, []))
        if "redact" in data:
            r = out.setdefault("redact", {})
            r.update({k: v for k, v in data["redact"].items() if k != "patterns"})
            r.setdefault("patterns", {}).update(data["redact"].get("patterns", {}))
    out.pop("sealed", None)
    text = json.dumps(out, indent=1, ensure_ascii=False) + "\n"
    policy = _build(path, files)  # invalid as it is: that error
    try:
        same = _build(path, [(path, json.loads(text))])._replace(sources=()) == policy._replace(sources=())
    except PolicyError:
        same = False
    if not same:
        raise PolicyError(f"{path}: rendered as one document it would load differently (a type"
                          " redefined after a type that uses it?); render refused")
    return _seal(text)


class _Lazy(Mapping):
    """Commands or filters of a sealed policy: each checked and built on first use, with the
    checks of a full load (a PolicyError then is a deny of that command, never an allow)."""

    def __init__(self, tables: dict[str, tuple[str, Any]], build) -> None:  # type: ignore[no-untyped-def]
        self._tables = tables
        self._build = build
        self._done: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        cmd = self._done.get(name)
        if cmd is None:
            src, table = self._tables[name]
            try:
                cmd = self._done[name] = self._build(name, table)
            except PolicyError as exc:
                raise PolicyError(f"{src}: {exc}") from None
        return cmd

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def __contains__(self, name: object) -> bool:
        return name in self._tables


class _LazyTypes(dict):
    """The named types of a sealed policy, built on first use (a type refers only to types
    named before it, as the full load checked)."""

    def __init__(self, specs: dict[str, Any], src: str) -> None:
        super().__init__()
        self._specs, self._src = specs, src

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[name] if name in self._specs else default

    def __missing__(self, name: str) -> ValueType:
        t = self[name] = _value_type(f"{self._src}: types.{name}", self._specs[name], self)
        return t


def _build(path: str, files: list[tuple[str, dict]], lazy: bool = False) -> Policy:
    settings: dict[str, Any] = {}
    named: dict[str, ValueType] = {}
    commands: dict[str, Command] = {}
    filters: dict[str, Command] = {}
    instead: dict[str, Instead] = {}
    services: dict[str, Service] = {}
    reports: dict[str, Report] = {}
    patterns: dict[str, Pattern] = {}
    max_line = Policy._field_defaults["redact_max_line"]
    deny: list[DenyEntry] = []
    examples: list[Example] = []
    raw_commands: dict[str, tuple[str, Any]] = {}
    raw_filters: dict[str, tuple[str, Any]] = {}
    for src, data in files:
        s = _keys(f"{src}: settings", data.get("settings", {}), set(Settings._fields))
        settings.update(s)
        types = _typed(f"{src}: types", data.get("types", {}), dict, "a table of value types")
        if lazy:  # a sealed policy: each type is built when a command that uses it is
            named = _LazyTypes(types, src)
        for tname, spec in () if lazy else types.items():
            if tname in KINDS:
                raise _fail(f"{src}: types.{tname}", "shadows a built-in type")
            named[tname] = _value_type(f"{src}: types.{tname}", spec, named)
        for i, d in enumerate(_typed(f"{src}: deny", data.get("deny", []), list, "a list of [[deny]] tables")):
            w = f"{src}: deny[{i}]"
            _keys(w, d, {"path", "why", "wall_except"}, {"path", "why"})
            p = _typed(f"{w}.path", d["path"], str, "a string")
            try:
                validate_entry(p)
            except ValueError as exc:
                raise _fail(w, str(exc)) from None
            deny.append(DenyEntry(p, _typed(f"{w}.why", d["why"], str, "a string"),
                                  _str_list(f"{w}.wall_except", d.get("wall_except", []))))
        cmds = _typed(f"{src}: commands", data.get("commands", {}), dict, "a table of commands")
        fils = _typed(f"{src}: filters", data.get("filters", {}), dict, "a table of filters")
        if lazy:
            raw_commands.update((name, (src, table)) for name, table in cmds.items())
            raw_filters.update((name, (src, table)) for name, table in fils.items())
        for name, table in () if lazy else cmds.items():
            try:
                commands[name] = _command(name, table, named)
            except PolicyError as exc:
                raise PolicyError(f"{src}: {exc}") from None
        for name, table in () if lazy else fils.items():
            try:
                filters[name] = _filter(name, table, named)
            except PolicyError as exc:
                raise PolicyError(f"{src}: {exc}") from None
        if "redact" in data:
            max_line = _redaction(f"{src}: redact", data["redact"], patterns, examples=not lazy) or max_line
        for form, spec in _typed(f"{src}: instead", data.get("instead", {}), dict, "a table of forms").items():
            w = f"{src}: instead.{form}"
            if not all(_COMMAND_NAME.fullmatch(word) or _OPTION_NAME.fullmatch(word) for word in form.split(" ")):
                raise _fail(w, "a form is a command name and up to two more words or options (\"podman logs\")")
            _keys(w, spec, {"run", "why"}, {"run", "why"})
            run, why = (_typed(f"{w}.{k}", spec[k], str, "a string") for k in ("run", "why"))
            if not run or _CONTROL.search(run + why) or len(form.split(" ")) > 3:
                raise _fail(w, "run must be one command line, why one line; a form has at most 3 words")
            instead[form] = Instead(run, why)
        for name, spec in _typed(f"{src}: services", data.get("services", {}), dict, "a table of services").items():
            services[name] = _service(f"{src}: services.{name}", name, spec)
        for name, spec in _typed(f"{src}: reports", data.get("reports", {}), dict, "a table of reports").items():
            reports[name] = _report(f"{src}: reports.{name}", name, spec)
        for i, e in enumerate(_typed(f"{src}: examples", data.get("examples", []), list, "a list of examples")):
            w = f"{src}: examples[{i}]"
            _keys(w, e, {"command", "decision", "code"}, {"command", "decision"})
            decision = _typed(f"{w}.decision", e["decision"], str, "a string")
            if decision not in ("allow", "deny"):
                raise _fail(w, "decision must be 'allow' or 'deny'")
            code = e.get("code")
            if code is not None:
                _typed(f"{w}.code", code, str, "a string")
            examples.append(Example(_typed(f"{w}.command", e["command"], str, "a string"), decision, code))
    return Policy(
        settings=_settings(path, settings),
        commands=_Lazy(raw_commands, lambda n, t: _command(n, t, named)) if lazy else MappingProxyType(commands),
        deny=tuple(deny),
        examples=tuple(examples),
        sources=tuple(src for src, _ in files),
        filters=_Lazy(raw_filters, lambda n, t: _filter(n, t, named)) if lazy else MappingProxyType(filters),
        redact=tuple(patterns.values()),
        redact_max_line=max_line,
        instead=MappingProxyType(instead),
        services=MappingProxyType(services),
        reports=MappingProxyType(reports),
    )


def _settings(src: str, s: dict[str, Any]) -> Settings:
    d = Settings()
    search_path = _str_list(f"{src}: settings.search_path", s.get("search_path", list(d.search_path)))
    roots = _str_list(f"{src}: settings.persist_roots", s.get("persist_roots", list(d.persist_roots)))
    kernel = _str_list(f"{src}: settings.kernel_readable", s.get("kernel_readable", list(d.kernel_readable)))
    for p in kernel:
        if not p.startswith(("/proc/", "/sys/")) or os.path.normpath(p) != p:
            raise _fail(f"{src}: settings.kernel_readable", f"{p!r} must be a normalised path under /proc or /sys")
    state_dir = _typed(f"{src}: settings.state_dir", s.get("state_dir", d.state_dir), str, "a string")
    for p in search_path + roots + (state_dir,):
        if not os.path.isabs(p) or os.path.normpath(p) != p:
            raise _fail(f"{src}: settings", f"{p!r} must be an absolute, normalised directory")
    if not search_path:
        raise _fail(f"{src}: settings.search_path", "must name at least one directory")
    sandbox = _typed(f"{src}: settings.sandbox", s.get("sandbox", d.sandbox), str, "a string")
    if sandbox not in SANDBOX_MODES:
        raise _fail(f"{src}: settings.sandbox", f"must be one of {', '.join(SANDBOX_MODES)}")
    return Settings(
        search_path=search_path,
        max_command_bytes=_int(f"{src}: settings.max_command_bytes", s.get("max_command_bytes", d.max_command_bytes), 16, 65536),
        timeout=_int(f"{src}: settings.timeout", s.get("timeout", d.timeout), 1, 86400),
        sandbox=sandbox,
        persist_roots=roots,
        kernel_readable=kernel,
        memory_mb=_int(f"{src}: settings.memory_mb", s.get("memory_mb", d.memory_mb), 16, 65536),
        max_output_bytes=_int(f"{src}: settings.max_output_bytes", s.get("max_output_bytes", d.max_output_bytes),
                              4096, 1 << 30),
        max_tasks=_int(f"{src}: settings.max_tasks", s.get("max_tasks", d.max_tasks), 1, 4096),
        max_concurrent=_int(f"{src}: settings.max_concurrent", s.get("max_concurrent", d.max_concurrent), 1, 256),
        rate_per_minute=_int(f"{src}: settings.rate_per_minute", s.get("rate_per_minute", d.rate_per_minute), 1, 100000),
        state_dir=state_dir,
    )
