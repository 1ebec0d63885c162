"""Turn an SSH command string into an argv of literal words, or refuse it.

Design (fail closed, two independent readings that must agree):

1. Input guard on the raw bytes: size, NUL, strict UTF-8, one line, no
   control or invisible format characters.
2. Our own quote-aware scanner reads the whole string the way bash would
   tokenise one simple command.  It performs bash quote removal and refuses,
   naming the construct, every unquoted character that could make bash do
   anything but pass literal words to execve (operators, redirections,
   expansions, globs, braces, tilde, comments, history, reserved words,
   assignments).  It runs first, so bashlex only ever sees plain words.
3. bashlex (reached only through ``diag_wrapper._bashlex``) must then agree:
   exactly one CommandNode whose parts are WordNodes without sub-parts, at
   exactly the spans our scanner found, each with the same literal word, and
   nothing but spaces between and around those spans.  Any disagreement is
   ``parse.mismatch``; any bashlex exception is ``parse.syntax``.

Known bashlex quirks this guards against: quote removal only strips quotes at
the start/end of a word (``'a'b'c'`` -> ``a'b'c``), ``"\\x"`` loses its
backslash, ``a'$x'`` is read as a parameter expansion, comments are dropped
silently, ``$'..'``/``$".."`` become ``$..``, and some inputs raise
AttributeError/TypeError/NotImplementedError instead of a parse error.  Such
words are refused rather than guessed at.  One bash rule bashlex does not
model: a command name starting with ``%`` (even quoted) is a job spec.
"""

import re
import unicodedata
from typing import NamedTuple

from . import _bashlex
from .model import Deny

__all__ = ["parse_command", "parse_pipeline", "parse_words", "Word"]

#: Stages a pipeline may have: the command and up to seven filters.
MAX_STAGES = 8

# Words bash treats as reserved when they appear unquoted in command position.
_RESERVED = frozenset(
    "! [[ ]] { } case coproc do done elif else esac fi for function if in "
    "select then time until while".split()
)
# Bash metacharacters end a word; used to find the raw first token.
_FIRST_TOKEN = re.compile(r"[^ |&;()<>]*")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
_MULTILINE = frozenset("\n\r\x85\u2028\u2029")
# Slashes, dots and colons NFKC keeps as they are (math and box-drawing symbols).
_LOOKALIKES = frozenset("\u2215\u2044\u29f8\u29f9\u2216\u29f5\u2571\u2572\u2024\u2027\u02d0\ua789\u2236")
# Scripts with letters that look like Latin ones ("/etc/pаsswd" with a Cyrillic a): refused
# in a word that also has ASCII letters (a whole word of Cyrillic or Greek text passes).
_LOOKALIKE_SCRIPTS = ("CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC", "LISU", "TIFINAGH", "VAI")
# Backslash inside double quotes only escapes these.
_DQ_ESCAPABLE = frozenset('$`"\\')


class Word(NamedTuple):
    """One word: its span in the text, the word after quote removal, and, when it has an
    unquoted ``*`` or ``?``, the glob pattern: those two characters as they are and every
    other character after a backslash (so a quoted ``*`` stays literal)."""

    start: int
    end: int
    literal: str
    glob: str | None = None


_Word = Word


def _check_input(raw: bytes, max_bytes: int) -> str:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise Deny("input.encoding", "command must be given as bytes")
    raw = bytes(raw)
    if not raw:
        raise Deny("input.empty", "empty command; run 'help' to see what is allowed")
    if len(raw) > max_bytes:
        raise Deny("input.too-long", f"command is {len(raw)} bytes, over the {max_bytes}-byte limit; shorten it")
    if b"\x00" in raw:
        raise Deny("input.nul", "command contains a NUL byte; remove it")
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise Deny("input.encoding", f"command is not valid UTF-8 (byte {exc.start}); send UTF-8 text") from None
    for ch in text:
        if ch in _MULTILINE:
            raise Deny("input.multiline", "command spans more than one line; send exactly one command on one line")
    for ch in text:
        # Cc: C0, DEL, C1 (incl. TAB).  Cf: invisible format characters
        # (bidi overrides, zero-width) that make the text read differently
        # from what runs.  Cs cannot survive strict UTF-8 decoding.
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            raise Deny("input.control", f"command contains control character U+{ord(ch):04X}; remove it")
    if not text.isascii():
        _check_confusable(text)
    return text


def _check_confusable(text: str) -> None:
    """Refuse characters that read as something else than what bash and the kernel see.

    A no-break space reads as a word break to a person but joins two words for bash
    (``cat /etc/hostname<U+00A0>/run/secrets/x`` is one path); a fullwidth solidus
    reads as ``/``. Any non-ASCII character whose compatibility form (NFKC) holds an
    ASCII character is such a look-alike, and so is every space but U+0020, private
    use and unassigned code points, and a combining mark on an ASCII character.
    Other non-ASCII text (``grep -i 'straße'``) passes.
    """
    prev = ""
    for ch in text:
        if not ch.isascii():
            cat = unicodedata.category(ch)
            looks = unicodedata.normalize("NFKC", ch)
            if (cat in ("Zs", "Co", "Cn") or ch in _LOOKALIKES or any(c.isascii() for c in looks)
                    or (cat[0] == "M" and prev.isascii())):
                name = unicodedata.name(ch, "unnamed")
                seen = f"reads as {looks!r}" if any(c.isascii() for c in looks) else "is invisible or alters the character before it"
                raise Deny("input.confusable", f"command contains U+{ord(ch):04X} ({name}), which {seen}"
                            " to a reader but not to bash; type it in plain ASCII")
        prev = ch
    for word in text.split(" "):
        if any(c.isascii() and c.isalpha() for c in word):
            for ch in word:
                if not ch.isascii() and unicodedata.name(ch, "").startswith(_LOOKALIKE_SCRIPTS):
                    raise Deny("input.confusable", f"{word!r} mixes Latin letters with U+{ord(ch):04X}"
                                f" ({unicodedata.name(ch)}), which looks like a Latin letter; type it in plain ASCII")


def _dollar(text: str, i: int, quoted: bool) -> Deny:
    """Name the expansion that starts with the ``$`` at text[i]."""
    nxt = text[i + 1 : i + 2]
    where = " inside double quotes" if quoted else ""
    if nxt == "'" and not quoted:
        return Deny("parse.ansi-c-quote", "$'...' (ANSI-C quoting) is not supported; use plain single quotes")
    if nxt == '"' and not quoted:
        return Deny("parse.locale-quote", '$"..." (locale quoting) is not supported; use plain quotes')
    if text.startswith("((", i + 1) or nxt == "[":
        return Deny("parse.arithmetic", f"arithmetic expansion{where} is not allowed; write the number itself")
    if nxt == "(":
        return Deny("parse.command-substitution", f"command substitution $(...){where} is not allowed; run commands one at a time")
    return Deny("parse.parameter", f"'$'{where} would expand a variable; variables are not expanded here, write the value or put '$' in single quotes")


def _unquoted_special(text: str, i: int) -> Deny | None:
    """Deny for the unquoted character text[i], or None if it is an ordinary word character."""
    ch = text[i]
    nxt = text[i + 1 : i + 2]
    if ch == "$":
        return _dollar(text, i, quoted=False)
    if ch == "`":
        return Deny("parse.command-substitution", "backtick command substitution is not allowed; run commands one at a time")
    if ch == ";":
        return Deny("parse.list", "';' joins commands; run one command per connection")
    if ch == "&":
        if nxt == "&":
            return Deny("parse.list", "'&&' joins commands; run one command per connection")
        if nxt == ">":
            return Deny("parse.redirect", "redirection '&>' is not allowed; output comes back over SSH")
        return Deny("parse.background", "'&' would run the command in the background; drop it")
    if ch == "|":
        if nxt == "|":
            return Deny("parse.list", "'||' joins commands; run one command per connection")
        if nxt == "&":
            return Deny("parse.pipeline", "'|&' would pipe standard error too; use '|' (standard error comes back"
                        " over SSH as it is)")
        return Deny("parse.pipeline", "a pipe is allowed only between a command and filters; send"
                    " 'COMMAND | FILTER ...' (see 'help')")
    if ch in "<>":
        if nxt == "(":
            return Deny("parse.process-substitution", f"process substitution {ch}(...) is not allowed; run commands one at a time")
        if ch == "<" and nxt == "<":
            return Deny("parse.heredoc", "here-documents and here-strings are not allowed; pass arguments instead")
        return Deny("parse.redirect", f"redirection '{ch}' is not allowed; output comes back over SSH, name input files as arguments")
    if ch in "()":
        return Deny("parse.compound", "subshells, functions and compound commands are not allowed; send one simple command")
    if ch == "[":
        return Deny("parse.glob", "an unquoted '[' would be a bracket glob, which is not expanded here: use '*' or"
                    " '?' in the last part of a path, or quote the '['")
    if ch in "{}":
        return Deny("parse.brace", f"unquoted '{ch}' could be brace expansion; braces are not expanded here, write each word or quote the '{ch}'")
    if ch == "~":
        return Deny("parse.tilde", "unquoted '~' would be tilde expansion; write the full path or quote the '~'")
    if ch == "#":
        return Deny("parse.comment", "unquoted '#' could start a comment; quote the '#'")
    if ch == "!":
        return Deny("parse.history", "unquoted '!' is history expansion or negation in bash; quote it with single quotes")
    return None


def _is_pipe(text: str, i: int) -> bool:
    """An unquoted ``|`` at text[i] that is a pipe (not ``||`` nor ``|&``)."""
    return text[i] == "|" and text[i + 1 : i + 2] not in ("|", "&")


def _scan(text: str, pipes: bool = False) -> list[list[_Word]]:
    """Split ``text`` into stages of words by bash tokenising and quote-removal rules.

    Without ``pipes`` there is one stage and an unquoted ``|`` is refused like any other
    operator; with it, a plain ``|`` ends a stage. Raises Deny for any other unquoted
    special character, for expansions inside double quotes, for unterminated quoting and
    for an empty stage.
    """
    stages: list[list[_Word]] = [[]]
    words = stages[0]
    i, n = 0, len(text)
    while i < n:
        if text[i] == " ":
            i += 1
            continue
        if pipes and _is_pipe(text, i):
            if not words:
                raise Deny("parse.syntax", "'|' with no command before it; send 'COMMAND | FILTER'")
            words = []
            stages.append(words)
            i += 1
            continue
        start, out, pat, globbed, quoted_dollar = i, [], [], False, False
        while i < n and text[i] != " " and not (pipes and _is_pipe(text, i)):
            ch = text[i]
            if ch == "\\":
                if i + 1 >= n:
                    raise Deny("parse.syntax", "trailing backslash; remove it or quote it")
                out.append(text[i + 1])
                pat.append("\\" + text[i + 1])
                i += 2
            elif ch == "'":
                close = text.find("'", i + 1)
                if close < 0:
                    raise Deny("parse.syntax", "unterminated single quote; close the quote")
                out.append(text[i + 1 : close])
                pat += ("\\" + c for c in text[i + 1 : close])
                quoted_dollar = quoted_dollar or "$" in text[i + 1 : close] or "`" in text[i + 1 : close]
                i = close + 1
            elif ch == '"':
                i += 1
                while True:
                    if i >= n:
                        raise Deny("parse.syntax", "unterminated double quote; close the quote")
                    c = text[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\" and i + 1 < n and text[i + 1] in _DQ_ESCAPABLE:
                        out.append(text[i + 1])
                        pat.append("\\" + text[i + 1])
                        i += 2
                        continue
                    if c == "$":
                        raise _dollar(text, i, quoted=True)
                    if c == "`":
                        raise Deny("parse.command-substitution", "backtick inside double quotes is command substitution; use single quotes")
                    if c == "!":
                        raise Deny("parse.history", "'!' inside double quotes is history expansion in interactive bash; use single quotes")
                    out.append(c)
                    pat.append("\\" + c)
                    i += 1
            elif ch in "*?":  # a glob: plan expands it where the value is a path (README "Globs")
                out.append(ch)
                pat.append(ch)
                globbed = True
                i += 1
            else:
                problem = _unquoted_special(text, i)
                if problem is not None:
                    raise problem
                out.append(ch)
                pat.append("\\" + ch)
                i += 1
        raw = text[start:i]
        if quoted_dollar and not (raw[0] == raw[-1] == "'" and raw.count("'") == 2):
            # bashlex reads '$' or '`' in single quotes as an expansion unless the quotes are
            # the whole word (a'$x'), and some of those it never finishes: a'${b' loops with
            # growing memory. So bashlex never sees one (the cross-check would refuse it anyway).
            raise Deny("parse.mismatch", f"word {raw!r}: a '$' or '`' in single quotes is read differently by"
                       " bashlex unless the quotes are the whole word; put the whole word in one pair of"
                       " single quotes")
        words.append(_Word(start, i, "".join(out), "".join(pat) if globbed else None))
    if not words and len(stages) > 1:
        raise Deny("parse.syntax", "'|' with no command after it; name the filter, e.g. '| grep PATTERN'")
    return stages


def _check_command_position(text: str) -> None:
    stripped = text.lstrip(" ")
    match = _FIRST_TOKEN.match(stripped)
    first = match.group(0) if match else ""
    if first in _RESERVED:
        raise Deny("parse.reserved-word", f"'{first}' is a shell reserved word; send one simple command")
    if _ASSIGNMENT.match(first):
        raise Deny("parse.assignment", "variable assignments are not allowed; the environment is fixed, drop the assignment")


_KIND_CODES = {
    "list": "parse.list",
    "pipeline": "parse.pipeline",
    "pipe": "parse.pipeline",
    "compound": "parse.compound",
    "function": "parse.compound",
    "if": "parse.compound",
    "for": "parse.compound",
    "while": "parse.compound",
    "until": "parse.compound",
    "reservedword": "parse.reserved-word",
    "redirect": "parse.redirect",
    "heredoc": "parse.heredoc",
    "assignment": "parse.assignment",
    "operator": "parse.list",
}


class _Deadline(BaseException):
    """bashlex took longer than :data:`BASHLEX_SECONDS` (some inputs make it loop)."""


def _too_long(*_: object) -> None:
    raise _Deadline


#: Time bashlex may take for one command; a few ms is usual. The scanner keeps known loops
#: away from it (a'${b'); this bounds any other, and the memory it would eat meanwhile.
BASHLEX_SECONDS = 2.0


def _bashlex_parse(text: str) -> list:
    """``_bashlex.parse`` under a deadline (SIGALRM, re-armed every 0.25 s in case bashlex
    swallows one); without one where signals cannot be handled (not the main thread)."""
    import signal

    try:
        old = signal.signal(signal.SIGALRM, _too_long)
    except ValueError:
        return _bashlex.parse(text)
    signal.setitimer(signal.ITIMER_REAL, BASHLEX_SECONDS, 0.25)
    try:
        return _bashlex.parse(text)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _bashlex_words(text: str, pipes: bool) -> list[list[_Word]]:
    """Parse with bashlex and require one simple command of plain words, or a pipeline
    (``|`` only) of such commands; the words of each stage."""
    try:
        nodes = _bashlex_parse(text)
    except _Deadline:
        raise Deny("parse.syntax", f"bashlex took more than {BASHLEX_SECONDS:g} s on this command; send"
                   " one simple command of plain words") from None
    except Exception as exc:  # bashlex raises ParsingError, NotImplementedError, AttributeError, ...
        raise Deny("parse.syntax", f"bash syntax not understood ({type(exc).__name__}); send one simple command of plain words") from None
    if not isinstance(nodes, list) or len(nodes) != 1:
        raise Deny("parse.list", "not exactly one command; run one command per connection")
    top = nodes[0]
    kind = getattr(top, "kind", None)
    if kind == "pipeline" and pipes:
        parts = list(getattr(top, "parts", []))
        commands = parts[0::2]
        pipes = parts[1::2]
        if len(parts) % 2 == 0 or any(getattr(p, "kind", None) != "pipe" or getattr(p, "pipe", None) != "|"
                                      for p in pipes):
            raise Deny("parse.pipeline", "bashlex parsed a pipeline with something but '|' between its commands;"
                       " use '|' between a command and its filters")
        return [_command_words(text, c) for c in commands]
    return [_command_words(text, top)]


def _command_words(text: str, top: object) -> list[_Word]:
    kind = getattr(top, "kind", None)
    if kind != "command":
        code = _KIND_CODES.get(str(kind), "parse.compound")
        if any(getattr(p, "kind", None) == "reservedword" for p in getattr(top, "parts", [])):
            code = "parse.reserved-word"
        elif kind == "list" and any(getattr(p, "op", None) == "&" for p in getattr(top, "parts", [])):
            code = "parse.background"
        raise Deny(code, f"bashlex parsed a {kind}, not one simple command; send one simple command")
    words: list[_Word] = []
    for part in getattr(top, "parts", []):
        pkind = getattr(part, "kind", None)
        if pkind != "word":
            raise Deny(_KIND_CODES.get(str(pkind), "parse.mismatch"), f"bashlex parsed a {pkind} in the command; only plain words are allowed")
        start, end = part.pos
        for sub in getattr(part, "parts", []):
            # The scanner already refused every unquoted expansion, so this is
            # bashlex reading quoted text as an expansion (it does for a'$x').
            raise Deny("parse.mismatch", f"bashlex reads a {getattr(sub, 'kind', '?')} expansion in {text[start:end]!r} where the checker reads literal text; put the whole word in one pair of single quotes")
        if not isinstance(part.word, str):
            raise Deny("parse.mismatch", "bashlex produced a non-text word; quote the words simply")
        words.append(_Word(start, end, part.word))
    if not words:
        raise Deny("parse.mismatch", "bashlex parsed a command without words; send one simple command")
    return words


def _cross_check(text: str, ours: list[list[_Word]], theirs: list[list[_Word]]) -> None:
    # Nothing but spaces outside the word spans (bashlex drops comments etc.), and exactly
    # one '|' between the last word of a stage and the first of the next.
    prev = 0
    for k, stage in enumerate(theirs):
        for j, w in enumerate(stage):
            gap = text[prev : w.start].strip(" ") if prev <= w.start else "?"
            if not (prev <= w.start < w.end <= len(text)) or gap != ("|" if k and not j else ""):
                raise Deny("parse.mismatch", "bashlex skipped part of the command; quote unusual characters")
            # Each bashlex word's source slice, read by our rules, is one word equal to bashlex's.
            mine = _scan(text[w.start : w.end])[0]
            if len(mine) != 1 or mine[0].literal != w.literal:
                raise Deny("parse.mismatch", f"word {text[w.start:w.end]!r} is read differently by bashlex and the checker; quote it more simply, e.g. one pair of single quotes")
            prev = w.end
    if text[prev:].strip(" ") or [[w[:3] for w in s] for s in ours] != [[w[:3] for w in s] for s in theirs]:
        raise Deny("parse.mismatch", "bashlex and the checker split the command into different words; quote it more simply")


def _parse(raw: bytes, max_bytes: int, pipes: bool) -> tuple[tuple[Word, ...], ...]:
    text = _check_input(raw, max_bytes)
    if not text.strip(" "):
        raise Deny("parse.empty", "no command given; run 'help' to see what is allowed")
    _check_command_position(text)
    ours = _scan(text, pipes)
    if len(ours) > MAX_STAGES:
        raise Deny("parse.pipeline", f"a pipeline of {len(ours)} stages; at most {MAX_STAGES} (a command and"
                   f" {MAX_STAGES - 1} filters)")
    for stage in ours[1:]:
        _check_command_position(text[stage[0].start :])
    theirs = _bashlex_words(text, pipes)
    _cross_check(text, ours, theirs)
    for argv in (tuple(w.literal for w in stage) for stage in ours):
        if not argv or argv[0] == "":
            raise Deny("parse.empty", "empty command name; start with the command to run")
        if argv[0].startswith("%"):
            # bash treats such a name, even quoted, as a job spec and runs `fg`.
            raise Deny("parse.reserved-word", "a command name starting with '%' is a job specification in bash; name the command")
        if "=" in argv[0]:
            raise Deny("parse.assignment", "a command name containing '=' looks like an assignment; name the command only")
    if any(stage[0].glob is not None for stage in ours):
        raise Deny("parse.glob", "a glob in the command's name; name the command")
    return tuple(tuple(stage) for stage in ours)


def parse_words(raw: bytes, max_bytes: int = 4096) -> tuple[tuple[Word, ...], ...]:
    """The words of each stage of ``raw``, with their glob patterns (see :func:`parse_pipeline`)."""
    try:
        return _parse(raw, max_bytes, pipes=True)
    except Deny:
        raise
    except Exception as exc:  # defence: a parser bug must refuse, never crash
        raise Deny("parse.syntax", f"command could not be parsed ({type(exc).__name__}); send one simple command of plain words") from None


def parse_pipeline(raw: bytes, max_bytes: int = 4096) -> tuple[tuple[str, ...], ...]:
    """The argv of each stage of ``raw``: one simple command, or ``CMD | CMD ...`` (at most
    :data:`MAX_STAGES`); raise Deny otherwise. Which stage may be what is match's business.
    A word with an unquoted ``*`` or ``?`` comes back as typed (quotes removed); whether it
    is expanded is plan's business (:func:`parse_words` has the patterns).

    Raises only ``Deny`` (codes ``input.*`` and ``parse.*``).
    """
    try:
        return tuple(tuple(w.literal for w in stage) for stage in _parse(raw, max_bytes, pipes=True))
    except Deny:
        raise
    except Exception as exc:  # defence: a parser bug must refuse, never crash
        raise Deny("parse.syntax", f"command could not be parsed ({type(exc).__name__}); send one simple command of plain words") from None


def parse_command(raw: bytes, max_bytes: int = 4096) -> tuple[str, ...]:
    """Return the argv of the single simple command in ``raw``; raise Deny otherwise.

    Raises only ``errors.Deny`` (codes ``input.*`` and ``parse.*``).
    """
    try:
        return tuple(w.literal for w in _parse(raw, max_bytes, pipes=False)[0])
    except Deny:
        raise
    except Exception as exc:  # defence: a parser bug must refuse, never crash
        raise Deny("parse.syntax", f"command could not be parsed ({type(exc).__name__}); send one simple command of plain words") from None
