"""What the agent reads: ``help`` (generated from the policy itself) and a denial's line."""

from __future__ import annotations

from .model import Plan
from .policy import ArgSlot, Command, Form, Option, Policy


def denial(p: Plan, policy: Policy | None) -> str:
    """``denied: REASON [rule RULE] (CODE)``, and the command's allowed forms when it has any."""
    line = f"denied: {p.reason}" + (f" [rule {p.rule}]" if p.rule else "") + f" ({p.code})"
    if policy is None or not p.argv:
        return line
    if p.rule and p.rule.startswith("| "):  # a filter was refused: show what may follow '|'
        cmd = policy.filters.get(p.rule[2:].split(" ", 1)[0])
        return line + "\nallowed after '|':\n" + (command_help(cmd) if cmd else _filters_line(policy))
    if p.argv[0] in policy.commands:
        line += "\nallowed forms:\n" + command_help(policy.commands[p.argv[0]])
    return line


def _filters_line(policy: Policy) -> str:
    return "  " + ", ".join(sorted(policy.filters)) + " (send 'help filters')"


def _option(opt: Option) -> str:
    names = ", ".join(opt.names)
    if opt.drop:
        return f"{names}  accepted and not passed on: {opt.help}"
    if opt.value is not None:
        sep = "=" if opt.value_mode != "required" else " "
        value = opt.value.describe()
        names += f"[{sep}{value}]" if opt.value_mode != "required" else f"{sep}{value}"
    extra = " (recursive: paths become trees)" if opt.recursive else ""
    return f"{names}{extra}" + (f"  {opt.help}" if opt.help else "")


def _args(slots: tuple[ArgSlot, ...]) -> str:
    out = []
    for s in slots:
        word = f"{s.name}:{s.type.describe()}"
        if s.max > 1:
            word += f"{{{s.min}..{s.max}}}"
        out.append(word if s.min else f"[{word}]")
    return " ".join(out)


def _form_lines(head: str, form: Form, indent: str) -> list[str]:
    lines = [f"{indent}{head} [OPTIONS] {_args(form.args)}".rstrip() + (f"  - {form.summary}" if form.summary else "")]
    lines += [f"{indent}    {_option(o)}" for o in form.options]
    return lines


def command_help(cmd: Command) -> str:
    lines = _form_lines(cmd.name, cmd.form, "")
    for words, form in cmd.subcommands.items():
        if words not in cmd.aliases:
            lines += _form_lines(" ".join((cmd.name, *words)), form, "  ")
    if cmd.default_subcommand:
        lines.append(f"  with no subcommand: {cmd.name} {' '.join(cmd.default_subcommand)}")
    if cmd.aliases:
        lines.append("  abbreviations: " + ", ".join(f"{' '.join(a)} = {' '.join(t)}" for a, t in cmd.aliases.items()))
    if cmd.forced_args:
        lines.append(f"  always run with: {' '.join(cmd.forced_args)}")
    if cmd.timeout:
        lines.append(f"  stopped after {cmd.timeout}s")
    return "\n".join(lines)


def filters_help(policy: Policy) -> str:
    out = ["Filters (COMMAND | FILTER | FILTER ...): they read only what comes through the pipe,",
           "never a file; the pipeline has the first command's time limit and output cap. Exit",
           "status: the last stage that failed (pipefail), a stage stopped by SIGPIPE because a",
           "later one was done reading counts as success.", ""]
    for name in sorted(policy.filters):
        out += [command_help(policy.filters[name]), ""]
    return "\n".join(out)


def services_help(policy: Policy, only: str | None = None) -> str:
    """Per-service recipes of the host policy: units, containers, probes, commands to start with."""
    out = []
    for name, s in policy.services.items():
        if only is not None and name != only:
            continue
        out.append(f"{name}: {s.summary}")
        if s.units:
            out.append(f"  units: {' '.join(s.units)}")
        if s.containers:
            out.append(f"  containers: {' '.join(s.containers)} (logs: journalctl CONTAINER_NAME=NAME)")
        if s.probes:
            out.append("  probes: " + " ".join(p.url for p in s.probes))
        out += [f"  $ {c}" for c in s.commands]
        if s.notes:
            out.append(f"  note: {s.notes}")
    return "\n".join(out) + "\n" if out else "this host's policy lists no services\n"


def probes_help(policy: Policy) -> str:
    out = ["curl asks exactly these URLs (GET, or HEAD with -I), nothing else; a URL with one of the",
           "host's own names is pinned to loopback. Options: curl -sS [-I|-i|-v|-f|-k|-o /dev/null|-w FORMAT] URL"]
    for name, s in policy.services.items():
        out += [f"  {p.url}  ({name}{', pinned to ' + p.connect if p.connect else ''})" for p in s.probes]
    return "\n".join(out) + "\n"


def reports_help(policy: Policy) -> str:
    """``report`` alone: the host's fixed reports, from the policy's [reports]."""
    if not policy.reports:
        return "this host's policy lists no reports\n"
    out = ["Reports: facts only root can see, each from one fixed command the host's configuration chose;",
           "you choose only which one runs. 'report NAME' (no arguments; filters may follow '|'):"]
    width = max(len(n) for n in policy.reports)
    out += [f"  {n:<{width}}  {r.summary} (stops after {r.timeout}s)" for n, r in sorted(policy.reports.items())]
    return "\n".join(out) + "\n"


def brief(policy: Policy) -> str:
    """All of it on a page, for an agent's context: each command with its verbs, the filters,
    the services, the rules; 'help COMMAND' has the options (at most 2,000 tokens)."""
    out = ["diag: read-only diagnostics over SSH. One command of literal words, optionally | filters.",
           "No ; && > $() globs or variables; quote patterns. Long options spelled out in full.",
           "A denial says why and what to run instead. 'help COMMAND' lists its options.", "", "Commands:"]
    for name in sorted(policy.commands):
        cmd = policy.commands[name]
        verbs = [" ".join(w) for w in cmd.subcommands if w not in cmd.aliases]
        out.append(f"  {name}" + (f" {{{'|'.join(verbs)}}}" if verbs else "") + f" - {cmd.form.summary}")
    out.append("Filters after '|': " + ", ".join(sorted(policy.filters)) + " (read the pipe only)")
    if policy.services:
        out += ["", "Services (help services for recipes, help probes for curl URLs):"]
        for name, s in policy.services.items():
            out.append(f"  {name}: units {' '.join(s.units) or '-'}" + (f"; probes {' '.join(p.url for p in s.probes)}"
                                                                        if s.probes else ""))
    if policy.reports:
        out += ["", "Reports (root-only facts, fixed commands): report NAME, with NAME one of "
                + ", ".join(sorted(policy.reports)) + " ('report' says what each shows)"]
    allowed = [e.command for e in policy.examples if e.decision == "allow"]
    if allowed:
        out += ["", "Examples: " + " ; ".join(allowed[:12])]
    st = policy.settings
    out += ["", f"Limits: {st.timeout}s, {st.max_output_bytes >> 20} MiB of output, {st.memory_mb} MiB of memory;"
            " secrets' locations are denied by any name (help: 'Denied locations')."]
    return "\n".join(out) + "\n"


def as_json(policy: Policy) -> str:
    """The whole policy as data, for tools: what is allowed and denied, the services."""
    import json

    def form(f: Form) -> dict:
        return {"summary": f.summary,
                "options": [{"names": list(o.names), "value": o.value.describe() if o.value else None,
                             "value_mode": o.value_mode, "recursive": o.recursive, "drop": o.drop, "help": o.help}
                            for o in f.options],
                "args": [{"name": a.name, "type": a.type.describe(), "min": a.min, "max": a.max} for a in f.args]}

    def command(c: Command) -> dict:
        return {**form(c.form), "forced_args": list(c.forced_args), "timeout": c.timeout,
                "subcommands": {" ".join(w): form(f) for w, f in c.subcommands.items() if w not in c.aliases},
                "aliases": {" ".join(a): " ".join(t) for a, t in c.aliases.items()},
                "default_subcommand": " ".join(c.default_subcommand) or None}

    data = {
        "commands": {n: command(c) for n, c in sorted(policy.commands.items())},
        "filters": {n: command(c) for n, c in sorted(policy.filters.items())},
        "deny": [{"path": e.path, "why": e.why} for e in policy.deny],
        "services": {n: {"summary": s.summary, "units": list(s.units), "containers": list(s.containers),
                         "probes": [p.url for p in s.probes], "commands": list(s.commands), "notes": s.notes}
                     for n, s in policy.services.items()},
        "reports": {n: {"summary": r.summary, "timeout": r.timeout, "max_output_bytes": r.max_output_bytes}
                    for n, r in sorted(policy.reports.items())},
        "instead": {f: {"run": i.run, "why": i.why} for f, i in policy.instead.items()},
        "examples": [{"command": e.command, "decision": e.decision, "code": e.code} for e in policy.examples],
        "redact": [r.name for r in policy.redact],
        "limits": {"timeout": policy.settings.timeout, "max_output_bytes": policy.settings.max_output_bytes,
                   "memory_mb": policy.settings.memory_mb, "max_concurrent": policy.settings.max_concurrent,
                   "rate_per_minute": policy.settings.rate_per_minute},
    }
    return json.dumps(data, indent=1) + "\n"


def render(policy: Policy, topic: str | None = None) -> str:
    if topic == "filters":
        return filters_help(policy)
    if topic == "--brief":
        return brief(policy)
    if topic == "--json":
        return as_json(policy)
    if topic == "probes":
        return probes_help(policy)
    if topic in ("reports", "report"):
        return reports_help(policy)
    if topic == "services" or (topic in policy.services and topic not in policy.commands):
        return services_help(policy, None if topic == "services" else topic)
    if topic is not None:
        cmd = policy.commands.get(topic)
        if cmd is None:
            return f"{topic!r} is not an allowed command; send 'help' for the list."
        text = command_help(cmd)
        if topic in policy.filters:
            text += "\nafter '|' (reads the pipe only):\n" + command_help(policy.filters[topic])
        return text + "\n"
    out = [
        "diag-wrapper: read-only diagnostics. Send ONE simple command of literal words, or one",
        "command piped into filters (see the end); no lists, redirections, substitutions,",
        "variables or globs. Options must be spelled out in full. 'help COMMAND' shows one",
        "command, 'help filters' the filters, 'help services' where this host's services log and",
        "how to probe them, 'report' the root-only reports, 'help --brief' all of it on a page.",
        "Allowed commands:",
        "",
    ]
    for name in sorted(policy.commands):
        out += [command_help(policy.commands[name]), ""]
    if policy.filters:
        out += [filters_help(policy)]
    if policy.services:
        out += ["Services of this host (where they log, how to probe them):", services_help(policy)]
    if policy.reports:
        out += [reports_help(policy)]
    allowed = [e.command for e in policy.examples if e.decision == "allow"]
    if allowed:
        out += ["Examples:"] + [f"  {c}" for c in allowed] + [""]
    st = policy.settings
    readers = ", ".join(sorted(n for n, c in policy.commands.items() if c.reads == "content"))
    out.append(f"Limits: {st.timeout}s by default, {st.memory_mb} MiB of memory per command, {st.max_concurrent}"
               f" commands at once, {st.rate_per_minute} commands a minute.")
    out.append(f"{readers} read regular files and directories only; in /proc and /sys only these:")
    out.append("  " + " ".join(st.kernel_readable))
    out.append("Denied locations (never readable, by any name):")
    out += [f"  {e.path}  - {e.why}" for e in policy.deny]
    if policy.redact:
        out.append("Output is masked where it looks like a secret ([redacted:NAME]), a net for accidents:")
        out += [f"  {r.name}" for r in policy.redact]
    return "\n".join(out) + "\n"
