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
        lines += _form_lines(" ".join((cmd.name, *words)), form, "  ")
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


def render(policy: Policy, topic: str | None = None) -> str:
    if topic == "filters":
        return filters_help(policy)
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
        "command, 'help filters' the filters. Allowed commands:",
        "",
    ]
    for name in sorted(policy.commands):
        out += [command_help(policy.commands[name]), ""]
    if policy.filters:
        out += [filters_help(policy)]
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
