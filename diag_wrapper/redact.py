"""The redaction net: mask secrets that land in a command's output by accident.

A net, not a boundary. What keeps secrets from the agent is the deny list and the kernel
wall; this catches the key pasted into a log line, the database URL with its password in
a unit file, a bearer token an error message quotes. A reader who wants to get past it can
(``cut -c``, ``grep -o`` a character at a time), and every such command is in the journal.

Patterns come from the policy (``[redact.patterns.NAME]``), each with a name:

* a *line* pattern (``regex``): each match, or only its ``secret`` group when it has one,
  becomes ``[redacted:NAME]``;
* a *block* pattern (``begin`` .. ``end``, a PEM private key): everything from the begin
  marker to the end marker becomes one ``[redacted:NAME]``; if the end never comes, nothing
  after the begin marker is passed on.

Every pattern has ``hints``: literals (compared in lower case) one of which is in every
match. A chunk that holds none of a pattern's hints is not searched for it, which is what
makes the net cheap on ordinary output (bench/RESULTS.md).

Streaming: text is masked a whole line at a time, so a secret split across two reads is
still one match. A line longer than ``max_line`` bytes is cut where no match runs across
the cut (``Redactor._long``); memory stays bounded by about ``max_line`` plus one read
whatever the output is.
"""

import re
from typing import Callable, NamedTuple


class Pattern(NamedTuple):
    name: str
    regex: re.Pattern[bytes] | None  # a line pattern
    begin: re.Pattern[bytes] | None  # a block pattern: begin .. end
    end: re.Pattern[bytes] | None
    hints: tuple[bytes, ...]  # lower case; one is in every match

    @property
    def marker(self) -> bytes:
        return b"[redacted:" + self.name.encode() + b"]"


def compile_pattern(name: str, regex: str | None = None, begin: str | None = None, end: str | None = None,
                    hints: tuple[str, ...] = ()) -> Pattern:
    """A pattern from policy text; ValueError saying what is wrong."""
    if (regex is None) == (begin is None) or (begin is None) != (end is None):
        raise ValueError("give either regex, or begin and end")
    if not hints or any(not h or h != h.lower() for h in hints):
        raise ValueError("hints must be a non-empty list of non-empty lower-case literals")

    def comp(text: str | None, what: str) -> "re.Pattern[bytes] | None":
        if text is None:
            return None
        try:
            compiled = re.compile(text.encode(), re.MULTILINE)
        except re.error as exc:
            raise ValueError(f"{what} is not a valid regular expression: {exc}") from None
        if compiled.match(b""):
            raise ValueError(f"{what} matches the empty string")
        return compiled

    return Pattern(name, comp(regex, "regex"), comp(begin, "begin"), comp(end, "end"),
                   tuple(h.encode() for h in hints))


def _replacer(p: Pattern) -> Callable[["re.Match[bytes]"], bytes]:
    assert p.regex is not None
    mark = p.marker
    if "secret" not in p.regex.groupindex:
        return lambda m: mark

    def repl(m: "re.Match[bytes]") -> bytes:
        s, e = m.span("secret")
        if s < 0:
            return mark
        whole, base = m.group(0), m.start()
        return whole[: s - base] + mark + whole[e - base :]

    return repl


BLOCK_MAX = 1 << 16  # bytes a block may run without its end before the net gives it up
_END_MAX = 128  # bytes kept back inside a block on an overlong line: an end marker fits
# A line of a key's inside: base64, indented or not (a key in YAML). Such lines are 64
# characters (70 for OpenSSH) but the last, and PGP's "=XXXX" checksum line, may be short.
_BASE64_LINE = re.compile(rb"[ \t]*+[A-Za-z0-9+/=]++\r?")
_LONG = 32


class Redactor:
    """One output stream's net: ``feed`` chunks, ``flush`` at the end; ``counts`` by name."""

    def __init__(self, patterns: tuple[Pattern, ...], max_line: int = 1 << 16) -> None:
        self.patterns = patterns
        self.lines = tuple((p, _replacer(p)) for p in patterns if p.regex is not None)
        self.blocks = tuple(p for p in patterns if p.begin is not None)
        self.max_line = max_line
        self.overlap = min(8192, max_line // 2)  # what a cut keeps back: a secret may run across it
        self.buf = b""
        self.inside: Pattern | None = None  # a block whose end has not come yet
        self.dropped = 0  # bytes of that block so far
        self.eol: Pattern | None = None  # a match ran to the end of an overlong line: drop to its newline
        self.held = (0, False)  # bytes at the start of buf held back as a base64 run, and whether one is long
        self.counts: dict[str, int] = {}

    def feed(self, data: bytes) -> bytes:
        """What can be passed on now: the masked text up to the last whole line (of a line
        longer than ``max_line``, up to a place no match runs across)."""
        buf = self.buf + data if self.buf else data
        if self.eol is not None:  # the rest of a line a match ran to the end of: masked already
            nl = buf.find(b"\n")
            if nl < 0:
                self.buf = b""
                return b""
            buf, self.eol, self.held = buf[nl:], None, (0, False)
        cut = buf.rfind(b"\n") + 1
        if cut and self.blocks:
            cut = self._hold_base64(buf, cut)
        if not cut:
            if len(buf) < self.max_line:
                self.buf = buf
                return b""
            return self._long(buf)
        self.buf = buf[cut:]
        return self._mask(buf[:cut])

    def _hold_base64(self, buf: bytes, cut: int) -> int:
        """Keep back the lines before ``cut`` that look like the inside of a key (base64 only,
        one of them long), up to :data:`BLOCK_MAX`: whether an end marker follows is known
        only with the next read. (A short word on its own line, ``active``, is not held.)"""
        start, long_line = cut, False
        while start > 0 and cut - start < BLOCK_MAX:
            if start <= self.held[0]:  # the run held back last time: known, not walked again
                start, long_line = 0, long_line or self.held[1]
                break
            prev = buf.rfind(b"\n", 0, start - 1) + 1
            if not _BASE64_LINE.fullmatch(buf, prev, start - 1):
                break
            long_line = long_line or len(buf[prev : start - 1].strip()) >= _LONG
            start = prev
        if long_line and cut - start < BLOCK_MAX:
            self.held = (cut - start, True)
            return start
        self.held = (0, False)
        return cut

    def flush(self) -> bytes:
        """The rest, at the end of the stream."""
        rest, self.buf, self.held = self.buf, b"", (0, False)
        return self._mask(rest) if rest else b""

    def _long(self, buf: bytes) -> bytes:
        """A line longer than ``max_line`` with no newline yet: pass on what no match runs
        across. A match that reaches the end of what is there (``Cookie: .*``, a value that
        goes on) masks the rest of the line too, up to its newline, whatever comes; otherwise
        the cut is ``overlap`` bytes before the end, moved to the start of any match across it
        (read whole with what follows), or past it when that would leave less than half."""
        if self.inside is not None:  # inside a block: its end (at most ~72 bytes) is all that is looked for
            self.buf = buf[-_END_MAX:]
            return self._mask(buf[:-_END_MAX])
        self.held = (0, False)
        low, seen = buf.lower(), {}
        spans: list[tuple[int, int, Pattern]] = []
        for p in self.patterns:
            rx = p.regex if p.regex is not None else p.begin
            if rx is not None and _any(p.hints, low, seen):
                spans += ((*m.span(), p) for m in rx.finditer(buf))
        to_end = [sp for sp in spans if sp[1] >= len(buf) and sp[2].regex is not None]
        if to_end:
            start, _, p = min(to_end, key=lambda sp: sp[0])
            start = _free(spans, start, before=True)
            self.buf, self.eol = b"", p
            self._count(p)
            return self._mask(buf[:start]) + p.marker
        target = len(buf) - self.overlap
        cut = _free(spans, target, before=True)
        if cut < len(buf) // 2:
            cut = _free(spans, target, before=False)
        self.buf = buf[cut:]
        return self._mask(buf[:cut])

    def _count(self, p: Pattern, n: int = 1) -> None:
        self.counts[p.name] = self.counts.get(p.name, 0) + n

    def _mask(self, text: bytes) -> bytes:
        out: list[bytes] = []
        pos = 0
        low = text.lower()
        seen: dict[bytes, bool] = {}  # hint -> in this text; hints are shared between patterns
        nxt: dict[str, re.Match[bytes] | None | bool] = {}
        while pos <= len(text):
            if self.inside is not None:
                assert self.inside.end is not None
                room = BLOCK_MAX - self.dropped
                m = self.inside.end.search(text, pos, pos + room + 64)
                if m is not None:
                    pos, self.inside, self.dropped = m.end(), None, 0
                elif len(text) - pos <= room:
                    self.dropped += len(text) - pos
                    break  # still inside: nothing of the rest is passed on
                else:  # no end within BLOCK_MAX: not a key after all (a quoted marker); go on
                    pos, self.inside, self.dropped = pos + room, None, 0
                    out.append(b"\n")
                continue
            first: tuple[Pattern, re.Match[bytes]] | None = None
            for p in self.blocks:
                if _any(p.hints, low, seen):
                    assert p.begin is not None
                    m = nxt.get(p.name, False)  # each pattern's next begin, searched again only once passed
                    if m is False or (m is not None and m.start() < pos):
                        m = nxt[p.name] = p.begin.search(text, pos)
                    if m is not None and (first is None or m.start() < first[1].start()):
                        first = (p, m)
            if first is None:
                out.append(self._plain(text[pos:], low[pos:] if pos else low, seen if not pos else {}))
                break
            p, m = first
            out += (self._plain(text[pos : m.start()], low[pos : m.start()], {}), p.marker)
            self._count(p)
            pos, self.inside, self.dropped = m.end(), p, 0
        return b"".join(out)

    def _plain(self, text: bytes, low: bytes, seen: dict[bytes, bool]) -> bytes:
        """Text outside any block: orphaned block ends, then the line patterns."""
        rest = self._orphans(text, low, seen) if self.blocks and text else None
        return self._lines(text, low, seen) if rest is None else self._lines(rest, rest.lower(), {})

    def _orphans(self, text: bytes, low: bytes, seen: dict[bytes, bool]) -> bytes | None:
        """A block's end marker with no begin before it (``tail`` or ``grep -A`` started inside
        a key): the base64 lines right before it and the marker become the block's marker.
        None when there is none."""
        changed = False
        for p in self.blocks:
            if not _any(p.hints, low, seen):
                continue
            assert p.end is not None
            parts, last = [], 0
            for m in p.end.finditer(text):
                line = text.rfind(b"\n", 0, m.start()) + 1
                if text[line : m.start()].strip():
                    continue  # not at the start of its line
                start, short = line, 0  # up to two short lines next to the end (the last of
                while start > last:     # the base64, PGP's checksum), then only long ones
                    prev = text.rfind(b"\n", last, start - 1) + 1 if start > 1 else 0
                    prev = max(prev, last)
                    if not _BASE64_LINE.fullmatch(text, prev, start - 1):
                        break
                    if len(text[prev : start - 1].strip()) < _LONG:
                        if short < 0 or short == 2:
                            break
                        short += 1
                    else:
                        short = -1
                    start = prev
                if start < line:
                    parts += (text[last:start], p.marker)
                    last = m.end()
                    self._count(p)
            if parts:
                text = b"".join(parts) + text[last:]
                low, seen, changed = text.lower(), {}, True
        return text if changed else None

    def _lines(self, text: bytes, low: bytes, seen: dict[bytes, bool]) -> bytes:
        """Each line pattern on the lines that hold one of its hints (only those: a regex
        over the whole chunk would cost more than all the hint scans)."""
        for p, repl in self.lines:
            if not _any(p.hints, low, seen):
                continue
            spans = _line_spans(low, tuple(h for h in p.hints if _any((h,), low, seen)))
            assert p.regex is not None
            parts, last, n = [], 0, 0
            for s, e in spans:
                line, k = p.regex.subn(repl, text[s:e])
                if k:
                    parts += (text[last:s], line)
                    last, n = e, n + k
            if n:
                self._count(p, n)
                text = b"".join(parts) + text[last:]
                low, seen = text.lower(), {}
        return text


_PROBE = 5  # CPython finds a needle of up to 5 bytes in 64 KiB 2-4x faster than a longer one


def _free(spans: list[tuple[int, int, Pattern]], at: int, before: bool) -> int:
    """The nearest place at or before (after) ``at`` that no span strictly contains: the
    start (end) of the union of overlapping spans around it (one sort, one sweep)."""
    lo = hi = None
    for s, e, _ in sorted(spans, key=lambda sp: sp[0]):
        if hi is not None and s < hi:  # overlaps the run so far
            hi = max(hi, e)
            continue
        if lo is not None and lo < at < hi:
            break
        lo, hi = s, e
    if lo is not None and lo < at < hi:
        return lo if before else hi
    return at


def _any(hints: tuple[bytes, ...], low: bytes, seen: dict[bytes, bool]) -> bool:
    """Is one of ``hints`` in ``low``? Each distinct hint (and its first bytes, a cheaper
    test that must pass first) is looked for once per chunk, whichever patterns share it."""
    for h in hints:
        hit = seen.get(h)
        if hit is None:
            probe = h[:_PROBE]
            hit = seen.get(probe)
            if hit is None:
                hit = seen[probe] = probe in low
            if hit and probe != h:
                hit = seen[h] = h in low
        if hit:
            return True
    return False


def _line_spans(low: bytes, hints: tuple[bytes, ...]) -> list[tuple[int, int]]:
    """The lines of ``low`` (start, end after the newline) that hold a hint, merged, in order."""
    spans: list[tuple[int, int]] = []
    for h in hints:
        i = low.find(h)
        while i >= 0:
            s = low.rfind(b"\n", 0, i) + 1
            e = low.find(b"\n", i + len(h))
            e = len(low) if e < 0 else e + 1
            spans.append((s, e))
            i = low.find(h, e)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def mask(patterns: tuple[Pattern, ...], text: bytes) -> tuple[bytes, dict[str, int]]:
    """All of ``text`` through a fresh net (the policy's example check, tests)."""
    r = Redactor(patterns)
    out = r.feed(text) + r.flush()
    return out, r.counts
