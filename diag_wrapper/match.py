"""Match an argv against the typed allowlist.

The tokenizer reads options the way the real tool's parser does (GNU getopt:
``--long=value``, ``--long value``, ``-n50``, ``-n 50``, clusters such as
``-la`` or ``-fn50``, options after positionals unless the command is
``option_style = "leading"``, ``--`` ends options) but it only knows the
names the policy lists, spelled out in full: an abbreviated long option is
refused even where getopt would accept it. Positionals then pick the
subcommand (longest match) and fill the typed argument slots.
"""

from typing import NamedTuple

from .model import Arg, Deny
from .policy import ArgSlot, Command, Form, Option, Policy
from .valuetypes import endpoint


class Match(NamedTuple):
    rule: str  # "journalctl", "systemctl status"
    command: Command
    form: Form  # the subcommand's form, or the command's own
    paths: tuple[Arg, ...]  # the path values (options' first), each with its argv index
    options: tuple[tuple[Option, str | None], ...] = ()  # the options given, with their values
    drops: tuple[tuple[int, int], ...] = ()  # (argv index, letter in a cluster or -1) of dropped flags
    implied: tuple[str, ...] = ()  # words appended: the default subcommand, when none was given
    pins: tuple[str, ...] = ()  # options put right after the forced ones: a probe's --connect-to


def match(argv: tuple[str, ...], policy: Policy, filter: bool = False) -> Match:
    """The rule ``argv`` matches among the commands, or (``filter``: a stage after '|')
    among the filters; Deny otherwise."""
    name = argv[0]
    if "/" in name:
        base = name.rstrip("/").rsplit("/", 1)[-1]
        raise Deny("match.path-command", f"commands are named, not given as paths: use {base!r}, not {name!r}")
    table = policy.filters if filter else policy.commands
    cmd = table.get(name)
    if cmd is None and filter:
        raise Deny("match.not-a-filter", f"{name!r} cannot follow '|'; the filters, which read only what comes"
                   f" through the pipe, are: {', '.join(sorted(table)) or '(none)'} (send 'help')")
    if cmd is None:
        raise Deny(
            "match.unknown-command",
            f"{name!r} is not an allowed command; allowed: {', '.join(sorted(policy.commands))} (send 'help')",
        )
    used, positionals = _tokenize(cmd, argv[1:])
    rule, form, rest, implied = _subcommand(cmd, [w for w, _ in positionals])
    if filter and len(rest) > sum(s.max for s in form.args):
        raise Deny("match.too-many-args", f"{rule!r} after '|' reads only the pipe: no file operands"
                   f" ({' '.join(rest[:3])}); it takes {_usage(form.args)}", rule)
    where = [i for _, i in positionals[len(positionals) - len(rest):]]
    allowed = set(cmd.form.options) | set(form.options)
    for opt, spelled, _, _, _ in used:
        if opt not in allowed:
            raise Deny("match.unknown-option", f"{spelled} is not allowed with {rule!r}", rule)
    recursive = any(opt.recursive for opt, _, _, _, _ in used)
    paths: list[Arg] = []
    for opt, spelled, value, index, _ in used:
        if value is not None and opt.value is not None:
            problem = opt.value.check(value)
            if problem:
                raise Deny("match.bad-value", f"{spelled}: {problem}", rule)
            if opt.value.kind == "endpoint":
                raise Deny("match.bad-value", f"{spelled}: a URL is given as the one positional", rule)
            if opt.value.path_kind:
                paths.append(Arg(value, opt.value.path_kind, index))
    if rest:
        for f in _forms(cmd, form):
            clash = [spelled for opt, spelled, _, _, _ in used if any(cmd.index[n] is opt for n in f.no_args_with)]
            if clash:
                raise Deny("match.bad-combination", f"{clash[0]} cannot be combined with arguments here"
                           f" ({' '.join(rest[:3])}...): drop {clash[0]} (the arguments say it already)", rule)
    given = 0
    pins: tuple[str, ...] = ()
    for (slot, value), index in zip(_fill(rule, form.args, rest), where):
        if slot.type.kind == "endpoint":
            pins += _probe(policy, value, rule)
        kind = slot.type.path_kind
        if kind:
            given += 1
            paths.append(Arg(value, "tree" if recursive else kind, index))
    tree_slot = any(s.type.path_kind == "tree" or (recursive and s.type.path_kind) for s in form.args)
    if tree_slot and not given:
        # `du`, `ls -R`, `grep -r x` with no path walk the working directory: check it like a named one.
        paths.append(Arg(".", "tree", None))
    drops = tuple(at for opt, _, _, _, at in used if opt.drop and at is not None)
    return Match(rule, cmd, form, tuple(paths), tuple((opt, value) for opt, _, value, _, _ in used), drops, implied,
                 pins)


def _probe(policy: Policy, url: str, rule: str) -> tuple[str, ...]:
    """A URL curl may ask: exactly one of the host's probe endpoints. One with the host's own
    name is pinned to loopback with ``--connect-to NAME:PORT:127.0.0.1:PORT``, which plan puts
    before every word of the agent (after a ``--`` it would be read as a URL). Not
    ``--resolve``: that only seeds curl's DNS cache, which ``-6`` throws away for a real
    lookup; ``--connect-to`` replaces the connection itself, and fails under ``-6``."""
    probe = policy.probe(url)
    if probe is None:
        known = [p.url for s in policy.services.values() for p in s.probes]
        raise Deny("match.bad-value", f"{url!r} is not a probe endpoint of this host (health checks only: a URL"
                   f" that runs work, such as a webhook, is never one); the endpoints are: "
                   f"{', '.join(known) or '(none)'} ('help probes')", rule)
    if probe.connect is None:
        return ()
    parts = endpoint(url)
    assert parts is not None
    addr = f"[{probe.connect}]" if ":" in probe.connect else probe.connect
    return ("--connect-to", f"{parts[1]}:{parts[2]}:{addr}:{parts[2]}")


def edit(argv: tuple[str, ...], drops: tuple[tuple[int, int], ...]) -> tuple[tuple[str, ...], dict[int, int]]:
    """``argv`` without its dropped flags (``-xeu`` -> ``-eu``, ``-x`` -> gone), and where
    each remaining word of argv now stands."""
    letters: dict[int, set[int]] = {}
    for index, letter in drops:
        letters.setdefault(index, set()).add(letter)
    out: list[str] = []
    where: dict[int, int] = {}
    for i, word in enumerate(argv):
        cut = letters.get(i)
        if cut is not None:
            word = "" if -1 in cut else "".join(c for j, c in enumerate(word) if j not in cut)
            if word in ("", "-"):
                continue
        where[i] = len(out)
        out.append(word)
    return tuple(out), where


def defaults(m: Match) -> tuple[str, ...]:
    """The words the command's and the subcommand's ``defaults`` add to this argv."""
    given = {opt: value for opt, value in m.options}
    out: list[str] = []
    for form in _forms(m.command, m.form):
        for d in form.defaults:
            if any(m.command.index[n] in given for n in d.unless):
                continue
            if d.when_option is not None:
                opt = m.command.index[d.when_option]
                if not any(o is opt and v in d.when_values for o, v in m.options):
                    continue
            out += d.add
    return tuple(out)


def _forms(cmd: Command, form: Form) -> tuple[Form, ...]:
    """The command's own form, then the subcommand's (once, when there is none)."""
    return (cmd.form,) if form is cmd.form else (cmd.form, form)


# --------------------------------------------------------------------------- options

# option, as spelled, value, argv index of the value, (argv index of the option, letter or -1)
Used = tuple[Option, str, "str | None", "int | None", "tuple[int, int] | None"]


def _tokenize(cmd: Command, args: tuple[str, ...]) -> tuple[list[Used], list[tuple[str, int]]]:
    """The options used, and the positionals with their argv index (args is argv[1:])."""
    used: list[Used] = []
    positionals: list[tuple[str, int]] = []
    i = 0
    ended = False
    while i < len(args):
        tok = args[i]
        i += 1
        if ended or not tok.startswith("-") or tok == "-" or (cmd.option_style == "leading" and positionals):
            positionals.append((tok, i))
        elif tok == "--":
            ended = True
        elif tok.startswith("--") or not cmd.short_clusters:
            i = _long(cmd, tok, args, i, used)
        elif tok[1:].isdigit() and "-" + tok[1] not in cmd.index and _counts_lines(cmd):
            # the old `head -5`, `tail -20`: GNU reads it as -n N, this allowlist does not
            raise Deny("match.unknown-option", f"{tok} is the old form of -n {tok[1:]}; write -n {tok[1:]}")
        else:
            i = _cluster(cmd, tok, args, i, used)
    return used, positionals


def _counts_lines(cmd: Command) -> bool:
    """-n takes a number here (head, tail, journalctl): so -N would be the old form of -n N."""
    n = cmd.index.get("-n")
    return n is not None and n.value is not None and n.value.kind == "int"


def _long(cmd: Command, tok: str, args: tuple[str, ...], i: int, used: list[Used]) -> int:
    name, eq, attached = tok.partition("=")
    opt = cmd.index.get(name)
    if opt is None:
        full = sorted(n for n in cmd.index if n.startswith(name) and len(n) > len(name))
        if full and name.startswith("--"):
            raise Deny("match.abbreviated-option", f"{name} is abbreviated; spell it out ({' or '.join(full)})")
        raise Deny("match.unknown-option", f"{name} is not an allowed option of {cmd.name!r} (send 'help {cmd.name}')")
    if opt.value is None:
        if eq:
            raise Deny("match.unexpected-value", f"{name} takes no value")
        used.append((opt, name, None, None, (i, -1)))
        return i
    if eq:
        used.append((opt, name, attached, None, None))
        return i
    return _detached(opt, name, args, i, used)


def _cluster(cmd: Command, tok: str, args: tuple[str, ...], i: int, used: list[Used]) -> int:
    for j in range(1, len(tok)):
        name = "-" + tok[j]
        opt = cmd.index.get(name)
        if opt is None:
            where = f" (in {tok})" if len(tok) > 2 else ""
            raise Deny("match.unknown-option", f"{name}{where} is not an allowed option of {cmd.name!r} (send 'help {cmd.name}')")
        if opt.value is None:
            used.append((opt, name, None, None, (i, j)))
            continue
        rest = tok[j + 1 :]
        if rest:
            used.append((opt, name, rest, None, None))
            return i
        return _detached(opt, name, args, i, used)
    return i


def _detached(opt: Option, name: str, args: tuple[str, ...], i: int, used: list[Used]) -> int:
    """The option has no attached value: find it the way the tool would."""
    assert opt.value is not None
    if opt.value_mode == "attached":  # getopt optional_argument: only --x=v or -xv
        used.append((opt, name, None, None, None))
        return i
    if opt.value_mode == "next-if-valid":  # journalctl -b: takes the next word if it parses
        if i < len(args) and opt.value.check(args[i]) is None:
            used.append((opt, name, args[i], i + 1, None))
            return i + 1
        used.append((opt, name, None, None, None))
        return i
    if i >= len(args):
        raise Deny("match.missing-value", f"{name} needs a value ({opt.value.describe()})")
    used.append((opt, name, args[i], i + 1, None))
    return i + 1


# --------------------------------------------------------------------------- positionals


def _subcommand(cmd: Command, positionals: list[str]) -> tuple[str, Form, list[str], tuple[str, ...]]:
    """The rule, its form, the positionals left for its slots, and the subcommand words the
    wrapper adds (the policy's default_subcommand, when none was given)."""
    if not cmd.subcommands:
        return cmd.name, cmd.form, positionals, ()
    for n in range(min(len(positionals), max(len(k) for k in cmd.subcommands)), 0, -1):
        words = tuple(positionals[:n])
        form = cmd.subcommands.get(words)
        if form is not None:
            return " ".join((cmd.name, *cmd.aliases.get(words, words))), form, positionals[n:], ()
    if not positionals and cmd.default_subcommand:
        words = cmd.default_subcommand
        return " ".join((cmd.name, *words)), cmd.subcommands[words], [], words
    names = ", ".join(" ".join(k) for k in cmd.subcommands if k not in cmd.aliases)
    if not positionals:
        raise Deny("match.missing-subcommand", f"{cmd.name!r} needs a subcommand: {names}", cmd.name)
    raise Deny("match.unknown-subcommand", f"{cmd.name} {positionals[0]!r} is not allowed; allowed: {names}", cmd.name)


def _fill(rule: str, slots: tuple[ArgSlot, ...], values: list[str]) -> list[tuple[ArgSlot, str]]:
    """Assign values to slots in order, each slot taking min..max values (backtracking)."""
    lo = sum(s.min for s in slots)
    hi = sum(s.max for s in slots)
    if len(values) < lo:
        raise Deny("match.too-few-args", f"{rule!r} needs at least {lo} argument(s): {_usage(slots)}", rule)
    if len(values) > hi:
        raise Deny("match.too-many-args", f"{rule!r} takes at most {hi} argument(s): {_usage(slots)}", rule)

    def go(k: int, pos: int) -> list[tuple[ArgSlot, str]] | None:
        if k == len(slots):
            return [] if pos == len(values) else None
        slot = slots[k]
        taken: list[tuple[ArgSlot, str]] = []
        for count in range(0, slot.max + 1):
            if count:
                if pos + count > len(values) or slot.type.check(values[pos + count - 1]) is not None:
                    break
                taken.append((slot, values[pos + count - 1]))
            if count >= slot.min:
                tail = go(k + 1, pos + count)
                if tail is not None:
                    return taken + tail
        return None

    filled = go(0, 0)
    if filled is None:
        for v in values:
            problems = [s.type.check(v) for s in slots]
            if all(problems):
                raise Deny("match.bad-value", f"{problems[0]}; {rule!r} takes {_usage(slots)}", rule)
        raise Deny("match.bad-value", f"the arguments do not fit {rule!r} {_usage(slots)}", rule)
    return filled


def _usage(slots: tuple[ArgSlot, ...]) -> str:
    parts = []
    for s in slots:
        word = s.name
        if s.max > 1:
            word += "..."
        parts.append(word if s.min else f"[{word}]")
    return " ".join(parts) or "(no arguments)"
