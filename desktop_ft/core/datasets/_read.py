"""Readers: one file type in, ``(line, record)`` pairs out, with the line an editor shows.

Every reader yields ``(line, record)`` pairs (a record is a dict of columns, or a plain string) or
``RowError``s, so a broken line is reported where it is and the good ones around it are kept.
Whole-file problems (missing, unreadable, not the type its name says) raise ``DatasetError``.
Nothing here knows about formats.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Iterable, Iterator

from desktop_ft.core.errors import DatasetError
from desktop_ft.core.scan import SCAN_BUFFER, open_for_scan

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
JSON_SUFFIXES = (".json",)
CSV_SUFFIXES = (".csv",)
TSV_SUFFIXES = (".tsv", ".tab")
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
ARROW_SUFFIXES = (".arrow", ".feather")
SUPPORTED = ".jsonl, .json, .csv, .tsv, .parquet, .arrow, .txt, .md, a folder saved with datasets' save_to_disk, " \
            "or a Hugging Face dataset id"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?")
#: a JSON object holding one list of rows: these keys win when it holds several
LIST_KEYS = ("train", "data", "rows", "examples", "records", "items", "instances", "samples")
#: plain text is cut into chunks of about this many characters, at paragraph boundaries
TEXT_CHUNK_CHARS = 2000


@dataclass(frozen=True)
class RowError:
    """One unusable row: 1-based line (as an editor shows it) and a plain sentence."""

    line: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


@dataclass
class Source:
    """What a reader found: records with their lines, the header if the file has one."""

    kind: str                                   # jsonl | json | csv | parquet | text | saved | hub
    records: Iterator[tuple[int, Any] | RowError]
    columns: list[str] | None = None            # a header, where the file type has one
    unit: str = "line"                          # 'line' for text files, 'row' for parquet/saved/hub
    notes: list[str] = field(default_factory=list)


def open_source(path: str | Path) -> tuple[Path | str, Source]:
    """Pick the reader for ``path`` (a file, a saved folder or a hub id) and start it."""
    text_path = str(path)
    p = Path(text_path).expanduser()
    if not p.exists():
        if HUB_ID.fullmatch(text_path) and p.suffix.lower() not in (JSONL_SUFFIXES + JSON_SUFFIXES + CSV_SUFFIXES +
                                                                      TSV_SUFFIXES + PARQUET_SUFFIXES + TEXT_SUFFIXES):
            return text_path, read_hub(text_path)
        raise DatasetError("file not found", path=p, hint="Check the path or pick the file again.")
    if p.is_dir():
        return p, read_saved(p)
    suffix = p.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return p, read_parquet(p)
    if suffix in ARROW_SUFFIXES:
        return p, read_arrow(p)
    if suffix in (".xlsx", ".xls", ".ods", ".numbers"):
        raise DatasetError("is a spreadsheet workbook, which Desktop FT does not read directly", path=p,
                           hint="Save it as 'CSV UTF-8 (comma delimited)' and pick the .csv file.")
    head = _read_head(p)
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    if suffix in TSV_SUFFIXES + CSV_SUFFIXES:  # a stream from the file, UTF-8 or Excel's UTF-16
        return p, read_csv_file(p, head, delimiter="\t" if suffix in TSV_SUFFIXES else None,
                                encoding="utf-16" if utf16 else "utf-8-sig")
    if not utf16:  # UTF-8: rows are read as a stream from the file
        if (suffix in JSONL_SUFFIXES and _is_line_per_row(head)) or (suffix in TEXT_SUFFIXES
                                                                    and _looks_like_jsonl(head)):
            return p, read_jsonl(p)
        if suffix in TEXT_SUFFIXES:
            return p, read_text(p, markdown=suffix in (".md", ".markdown"))
        if _first_byte(head) == b"[":  # .json, a .jsonl holding one list, or no known suffix
            return p, read_json_list(p)
        if _first_byte(head) == b"{" and suffix not in TEXT_SUFFIXES \
                and p.stat().st_size >= STREAM_OBJECT_BYTES:
            streamed = read_big_json_object(p)
            if streamed is not None:
                return p, streamed
    raw = _read_bytes(p)
    if utf16:  # UTF-16 (Excel's 'Unicode text'): read as UTF-8 from here on
        raw = decode_text(p, raw).encode("utf-8")
    if suffix in JSON_SUFFIXES:
        return p, read_json(p, raw)
    if suffix in JSONL_SUFFIXES:
        return p, read_jsonl(p, raw) if _is_line_per_row(raw) else read_json(p, raw)
    if suffix in TEXT_SUFFIXES:
        if _looks_like_jsonl(raw):
            return p, read_jsonl(p, raw)
        return p, read_text(p, raw, markdown=suffix in (".md", ".markdown"))
    if _first_byte(raw) in (b"{", b"["):
        return p, read_json(p, raw)
    raise DatasetError(f"has type '{suffix or 'no extension'}', which Desktop FT cannot read", path=p,
                       hint=f"Use one of: {SUPPORTED}.")


# -- text files ------------------------------------------------------------------------------------

def line_offsets(path: str | Path, lines: Iterable[int]) -> dict[int, int]:
    """Byte offset of each of ``lines`` (1-based) in a text file: one pass, a line at a time.

    Made once, off the GUI thread, so that showing a problem's line is a seek, not a scan.
    """
    wanted = set(lines)
    if not wanted:
        return {}
    last = max(wanted)
    out: dict[int, int] = {}
    pos = 0
    with open_for_scan(path) as f:
        for number, raw_line in enumerate(f, start=1):
            if number in wanted:
                out[number] = pos
            if number >= last:
                break
            pos += len(raw_line)
    return out


def line_at(path: str | Path, offset: int, limit: int = 100_000) -> str:
    """The line starting at byte ``offset`` (at most ``limit`` bytes of it), decoded leniently."""
    with Path(path).open("rb") as f:
        f.seek(offset)
        raw = f.readline(limit)
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


#: bytes read to decide how to read a file (its encoding, one row per line or not)
HEAD_BYTES = 256 * 1024


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(HEAD_BYTES)
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: OSError) -> DatasetError:
    return DatasetError(f"cannot be read ({exc.strerror or exc})", path=path,
                        hint="Check that the file exists and that you may read it.")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None


def decode_text(path: Path, raw: bytes) -> str:
    """UTF-8 (BOM or not) or UTF-16 with a BOM (Excel's 'Unicode text'); a bad byte names its line."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise DatasetError("starts like UTF-16 but is not valid UTF-16", path=path,
                               hint="Save the file as UTF-8.") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _not_utf8(path, raw[exc.start], line, col) from None


def _not_utf8(path: Path, byte: int, line: int, col: int) -> DatasetError:
    return DatasetError(f"is not valid UTF-8: byte 0x{byte:02x} at column {col} cannot be decoded", path=path,
                        line=line, hint="Save the file as UTF-8 (in Excel: 'CSV UTF-8'; in an editor: Save with "
                                        "encoding UTF-8).")


def _is_line_per_row(raw: bytes) -> bool:
    """False for a .jsonl file that really holds one JSON array or pretty-printed objects.

    One row per line when the first line is a whole object (or a whole list of messages), or when
    at least two of the first five lines are objects (so one broken first line does not turn the
    whole file into a different format).
    """
    lines = [ln.strip() for ln in raw[:100000].split(b"\n") if ln.strip()][:5]
    if not lines:
        return True
    lines[0] = lines[0].lstrip(b"\xef\xbb\xbf")
    if lines[0].startswith(b"["):
        first = _parse(lines[0])
        return isinstance(first, list) and bool(first) and all(
            isinstance(m, dict) and ("role" in m or "from" in m) for m in first)
    if lines[0].startswith(b"{"):
        return sum(isinstance(_parse(ln), dict) for ln in lines) >= min(2, len(lines)) or \
            isinstance(_parse(lines[0]), dict)
    return True


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _looks_like_jsonl(raw: bytes) -> bool:
    lines = [ln for ln in raw[:20000].splitlines() if ln.strip()][:5]
    if not lines:
        return False
    for ln in lines:
        try:
            if not isinstance(json.loads(ln.decode("utf-8-sig")), dict):
                return False
        except (UnicodeDecodeError, ValueError):
            return False
    return True


def read_jsonl(path: Path, raw: bytes | None = None) -> Source:
    """One JSON value per line: from ``raw``, or read from the file a line at a time (any size)."""
    def lines() -> Iterator[bytes]:
        if raw is not None:
            yield from raw.split(b"\n")
            return
        try:
            with open_for_scan(path) as f:
                yield from f
        except OSError as exc:
            raise _unreadable(path, exc) from None

    def records() -> Iterator[tuple[int, Any] | RowError]:
        for lineno, raw_line in enumerate(lines(), start=1):
            try:
                text = raw_line.decode("utf-8").lstrip("\ufeff").strip()  # a BOM on any line: files joined with cat
            except UnicodeDecodeError as exc:
                yield RowError(lineno, f"is not valid UTF-8 (byte 0x{raw_line[exc.start]:02x} at column "
                                       f"{exc.start + 1}); save the file as UTF-8.")
                continue
            if not text:
                continue
            try:
                obj = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                yield RowError(lineno, _json_problem(exc, text))
                continue
            yield lineno, obj

    return Source("jsonl", records())


def _json_problem(exc: Exception, text: str = "") -> str:
    if isinstance(exc, json.JSONDecodeError):
        if exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated string"):
            hint = " The line ends too early: it may be cut off, or one object may be spread over several lines."
        elif exc.msg.startswith("Expecting property name") and "'" in text:
            hint = " JSON needs double quotes (\") around names and text, not single quotes."
        else:
            hint = ""
        return f"is not valid JSON ({_msg(exc)} at column {exc.colno}).{hint}"
    return "is not valid JSON (nested too deeply)."


_WS = re.compile(r"[ \t\n\r]*")


#: characters one element of a streamed JSON list may span before it counts as broken
MAX_ELEMENT_CHARS = 64 << 20


class _Scanner:
    """Walks a JSON text and remembers where each element starts, to name its line.

    Made on the whole text (``_Scanner(text)``), or on a file read a chunk at a time
    (``_Scanner.reading(path)``): then the text is a window that grows when an element runs past
    its end and drops what was read, so a JSON list of any size is read in bounded memory. The
    walk is the same either way; only ``more`` and ``drop`` differ.
    """

    def __init__(self, text: str, chunks: Iterator[str] | None = None) -> None:
        self.text = text
        self.decoder = json.JSONDecoder()
        self._pos = 0
        self._line = 1
        self._chunks = chunks
        self._first_line, self._first_col = 1, 1  # where text[0] is in the file

    @classmethod
    def reading(cls, path: Path) -> _Scanner:
        return cls("", _decoded_chunks(path))

    def more(self) -> bool:
        """Read the next chunk onto the end of the text; False at the end of the file (or of a whole text)."""
        if self._chunks is None:
            return False
        for chunk in self._chunks:
            if chunk:
                self.text += chunk
                return True
        self._chunks = None
        return False

    def drop(self, pos: int) -> int:
        """Forget the text before ``pos`` (read already, and ``line_at(pos)`` asked); the new ``pos``."""
        if self._chunks is None or pos < SCAN_KEEP:
            return pos
        newline = self.text.rfind("\n", 0, pos)
        self._first_col = (self._first_col if newline < 0 else 1) + pos - newline - 1
        self._first_line = self._line
        self.text = self.text[pos:]
        self._pos = 0
        return 0

    def line_at(self, pos: int) -> int:
        if pos >= self._pos:
            self._line += self.text.count("\n", self._pos, pos)
        else:
            self._line = self._first_line + self.text.count("\n", 0, pos)
        self._pos = pos
        return self._line

    def skip(self, pos: int) -> int:
        while True:
            end = _WS.match(self.text, pos).end()  # type: ignore[union-attr]
            if end < len(self.text) or not self.more():
                return end

    def decode_at(self, pos: int, line: int) -> tuple[Any, int] | RowError:
        """One JSON value starting at ``pos`` and where it ends, or the RowError that stops reading."""
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, pos)
                if end < len(self.text) or not self.more():  # a number at the window's end may go on
                    return value, end
            except json.JSONDecodeError as exc:
                if len(self.text) - pos < MAX_ELEMENT_CHARS and self.more():
                    continue
                return RowError(line, _broken_here(exc, self._first_line, self._first_col))
            except RecursionError:
                return RowError(line, "is not valid JSON (nested too deeply); rows after it were not read.")

    def array(self, pos: int,
              whole_file: Path | None = None) -> Generator[tuple[int, Any] | RowError, None, int | None]:
        """Elements of the array starting at ``pos`` ('['); a syntax error ends it with a RowError.
        The generator's return value is where the array ends (after its ']'; None after an error).

        ``whole_file``: the array is the file's top level, so anything after its ']' is rows that
        would be lost without a word: a ``DatasetError``.
        """
        pos = self.skip(pos + 1)
        if pos < len(self.text) and self.text[pos] == "]":
            return pos + 1
        while True:
            pos = self.skip(pos)
            line = self.line_at(pos)
            pos = self.drop(pos)
            decoded = self.decode_at(pos, line)
            if isinstance(decoded, RowError):
                yield decoded
                return None
            value, end = decoded
            yield line, value
            pos = self.skip(end)
            text = self.text
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "]":
                after = self.skip(pos + 1)
                if whole_file is not None and after < len(self.text):
                    raise DatasetError("holds more data after its JSON list ends, which would not be read",
                                       path=whole_file, line=self.line_at(after),
                                       hint="Put every row inside the one list, or save one object per line "
                                            "as .jsonl.")
                return pos + 1
            where = self.line_at(min(pos, len(text)))
            found = "the end of the file" if pos >= len(text) else repr(text[pos])
            yield RowError(where, f"the JSON list breaks here: expected ',' or ']' but found {found}; rows after "
                                  "this line were not read.")
            return None

    def stream(self, pos: int) -> Iterator[tuple[int, Any] | RowError]:
        """Values written one after another (pretty-printed objects in a .jsonl file)."""
        text = self.text
        pos = self.skip(pos)
        while pos < len(text):
            line = self.line_at(pos)
            decoded = self.decode_at(pos, line)
            if isinstance(decoded, RowError):
                yield decoded
                return
            value, end = decoded
            yield line, value
            pos = self.skip(end)

    def object_values(self, pos: int) -> dict[str, int]:
        """Start position of each value in the object at ``pos`` (which is known to be valid JSON)."""
        text = self.text
        starts: dict[str, int] = {}
        pos = self.skip(pos + 1)
        while pos < len(text) and text[pos] != "}":
            key, pos = self.decoder.raw_decode(text, pos)
            pos = self.skip(pos)
            pos = self.skip(pos + 1)  # ':'
            starts[key] = pos
            _, pos = self.decoder.raw_decode(text, pos)
            pos = self.skip(pos)
            if pos < len(text) and text[pos] == ",":
                pos = self.skip(pos + 1)
        return starts

    def members(self, pos: int) -> Generator[tuple[str, int], int, None]:
        """Walk the object starting at ``pos`` ('{') member by member, however big: yields each
        key and where its value starts; whoever reads the value sends back where it ends. Anything
        but a plain object with nothing after it raises ``_WholeReadNeeded``."""
        pos = self.skip(pos + 1)
        if self.text.startswith("}", pos):
            end = pos + 1
        else:
            while True:
                line = self.line_at(pos)
                pos = self.drop(pos)
                decoded = self.decode_at(pos, line)
                if isinstance(decoded, RowError) or not isinstance(decoded[0], str):
                    raise _WholeReadNeeded
                key, pos = decoded
                pos = self.skip(pos)
                if not self.text.startswith(":", pos):
                    raise _WholeReadNeeded
                pos = self.skip((yield key, self.skip(pos + 1)))
                if self.text.startswith(",", pos):
                    pos = self.skip(pos + 1)
                elif self.text.startswith("}", pos):
                    end = pos + 1
                    break
                else:
                    raise _WholeReadNeeded
        if self.skip(end) < len(self.text):  # several objects one after another: read_json's case
            raise _WholeReadNeeded


def _msg(exc: json.JSONDecodeError) -> str:
    return re.sub(r" (starting )?at$", "", exc.msg)


def _broken_here(exc: json.JSONDecodeError, first_line: int = 1, first_col: int = 1) -> str:
    """The RowError text for a JSON value that does not parse; ``exc.doc`` starts at line
    ``first_line``, column ``first_col`` of the file (not 1, 1 when read as a stream)."""
    found = exc.doc[exc.pos:exc.pos + 1]
    why = {"]": " (JSON allows no comma before ']')", "}": " (JSON allows no comma before '}')",
           "/": " (JSON allows no comments)", "#": " (JSON allows no comments)"}.get(found, "")
    line = first_line + exc.lineno - 1
    col = exc.colno + (first_col - 1 if exc.lineno == 1 else 0)
    return (f"the JSON is broken here ({_msg(exc)}{why} at line {line}, column {col}); rows after "
            "it were not read. Fix it, or save one object per line as .jsonl so one bad row cannot hide the rest.")


#: text kept before the element being read when a streamed list drops what it has read (so the
#: window is not cut for every small element)
SCAN_KEEP = 1 << 20


def _decoded_chunks(path: Path) -> Iterator[str]:
    """The UTF-8 text of ``path`` (a BOM dropped), ``SCAN_BUFFER`` bytes at a time; a bad byte
    raises the DatasetError ``decode_text`` would, naming its line."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    fed, lines_fed, last_newline = 0, 0, -1  # bytes given to the decoder so far, their line ends, the last one
    try:
        with open_for_scan(path) as f:
            while True:
                raw = f.read(SCAN_BUFFER)
                try:
                    yield decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as exc:  # exc.object: bytes held from the last read, then raw
                    data, start = exc.object, exc.start
                    where = fed - (len(data) - len(raw)) + start
                    newline = data.rfind(b"\n", 0, start)
                    col = start - newline if newline >= 0 else where - last_newline
                    raise _not_utf8(path, data[start], lines_fed + data.count(b"\n", 0, start) + 1, col) from None
                if not raw:
                    return
                cut = raw.rfind(b"\n")
                if cut >= 0:
                    last_newline = fed + cut
                lines_fed += raw.count(b"\n")
                fed += len(raw)
    except OSError as exc:
        raise _unreadable(path, exc) from None


class _WholeReadNeeded(Exception):
    """A big JSON object that is not one list of rows beside small values (or is not valid JSON):
    read it whole, as ``read_json`` does, which also names any syntax error exactly."""


#: a JSON object file from this size on is read from the disk in two passes (``read_big_json_object``)
#: rather than whole: a whole read holds the text and every row as Python objects, ~6× the file
STREAM_OBJECT_BYTES = 64 << 20
#: a big object with more members than this (rows keyed by id) is read whole
MAX_STREAMED_MEMBERS = 10_000
#: elements of each list kept from the first pass, to tell rows from other lists (``_list_key``)
LIST_HEAD = 20


def read_big_json_object(path: Path) -> Source | None:
    """Rows of a file whose top level is an object holding them in one list, such as
    ``{"version": 2, "data": [...]}``, read from the disk in bounded memory; None when its layout
    needs the whole object (columns stored as lists, a pandas layout, rows keyed by id).

    A first pass walks the whole file: every list's first elements and length, the other values
    whole, so the list is chosen by the rule a whole read uses (``_list_key``) and any syntax
    error is found before a row is given (then None: the whole read names it). The second pass
    gives the chosen list's rows as ``read_json`` does, with the same lines."""
    try:
        top, lengths = _object_outline(path)
    except _WholeReadNeeded:
        return None
    values = list(top.values())
    if _pandas_layout(top) is not None or (values and all(isinstance(v, dict) for v in values)) \
            or _is_columnar(top, lengths):
        return None
    key = _list_key(top, lengths)
    if key is None:
        return None

    def rows() -> Iterator[tuple[int, Any] | RowError]:
        scan = _Scanner.reading(path)
        members = scan.members(scan.skip(0))
        try:
            name, pos = next(members)
            while name != key:
                name, pos = members.send(_skip_value(scan, pos))
        except (StopIteration, _WholeReadNeeded):
            raise DatasetError("changed while it was being read", path=path,
                               hint="Pick the file again once whatever writes it has finished.") from None
        yield from scan.array(pos)

    source = Source("json", rows())
    source.notes.append(f"rows read from the list under '{key}'")
    return source


def _object_outline(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The top-level object of ``path`` with each list cut to its first ``LIST_HEAD`` elements, and
    the lists' lengths; one pass over the file, holding one element at a time."""
    scan = _Scanner.reading(path)
    top: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    members = scan.members(scan.skip(0))
    try:
        key, pos = next(members)
        while True:
            if key in top or len(top) >= MAX_STREAMED_MEMBERS:
                raise _WholeReadNeeded
            if scan.text.startswith("[", pos):
                top[key], lengths[key], end = _list_outline(scan, pos)
            else:
                top[key], end = _value(scan, pos)
            key, pos = members.send(end)
    except StopIteration:
        return top, lengths


def _list_outline(scan: _Scanner, pos: int) -> tuple[list[Any], int, int]:
    """The list at ``pos``: its first ``LIST_HEAD`` elements, its length and where it ends."""
    head: list[Any] = []
    count = 0
    elements = scan.array(pos)
    while True:
        try:
            item = next(elements)
        except StopIteration as done:
            return head, count, done.value
        if isinstance(item, RowError):
            raise _WholeReadNeeded
        if count < LIST_HEAD:
            head.append(item[1])
        count += 1


def _value(scan: _Scanner, pos: int) -> tuple[Any, int]:
    decoded = scan.decode_at(pos, scan.line_at(pos))
    if isinstance(decoded, RowError):
        raise _WholeReadNeeded
    return decoded


def _skip_value(scan: _Scanner, pos: int) -> int:
    """Where the value at ``pos`` ends."""
    return _list_outline(scan, pos)[2] if scan.text.startswith("[", pos) else _value(scan, pos)[1]


def read_json_list(path: Path) -> Source:
    """A file whose top level is a JSON list, read an element at a time from the disk (any size)."""
    scan = _Scanner.reading(path)
    return Source("json", scan.array(scan.skip(0), whole_file=path))


def _first_byte(data: bytes) -> bytes:
    """The first byte after a UTF-8 byte-order mark and white space (b"" if there is none)."""
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]


def read_json(path: Path, raw: bytes) -> Source:
    text = decode_text(path, raw)
    scan = _Scanner(text)
    start = scan.skip(0)
    if start >= len(text):
        return Source("json", iter(()))
    if text[start] == "[":
        return Source("json", scan.array(start, whole_file=path))
    try:
        top = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several objects one after another: one per line, or pretty-printed
            return Source("json", scan.stream(start)) if not _is_line_per_row(raw) else read_jsonl(path, raw)
        bad_line = text.split("\n")[exc.lineno - 1] if exc.lineno - 1 < text.count("\n") + 1 else ""
        problem = _json_problem(json.JSONDecodeError(exc.msg, bad_line, exc.colno - 1), bad_line)
        found = bad_line[exc.colno - 1:exc.colno]
        if found in ("]", "}", "/", "#"):
            problem = f"is not valid JSON at column {exc.colno}: JSON allows no " + \
                ("comments" if found in "/#" else f"comma before '{found}'")
        raise DatasetError(problem.removesuffix("."), path=path, line=exc.lineno) from None
    except RecursionError:
        raise DatasetError("is not valid JSON (nested too deeply)", path=path) from None
    if not isinstance(top, dict):
        raise DatasetError(f"holds a single {type(top).__name__}, not rows", path=path,
                           hint="Use a list of objects, or one object per line (.jsonl).")
    pandas_rows = _pandas_layout(top)
    if pandas_rows is not None:  # DataFrame.to_json() as 'columns' or 'split': no per-row lines to name
        source = Source("json", _numbered(pandas_rows), columns=[str(c) for c in pandas_rows[0]] if pandas_rows
                        else None, unit="row")
        source.notes.append("a pandas DataFrame saved with to_json(); rows are numbered from 1")
        return source
    from desktop_ft.core.datasets._formats import looks_like_a_row

    if top and all(isinstance(v, dict) for v in top.values()) and not looks_like_a_row(top) \
            and looks_like_a_row(next(iter(top.values()))):  # {"id1": {row}, "id2": {row}} (orient='index')
        starts = scan.object_values(start)
        source = Source("json", iter([(scan.line_at(starts[k]), v) for k, v in top.items()]))
        source.notes.append("rows read from an object keyed by id")
        return source
    key = _list_key(top)
    if key is None:
        return Source("json", iter([(scan.line_at(start), top)]))
    value_start = scan.object_values(start)[key]
    source = Source("json", scan.array(value_start))
    source.notes.append(f"rows read from the list under '{key}'")
    if _is_columnar(top):
        lines = [line for line, _ in _ok(scan.array(value_start))]
        source = Source("json", iter(list(zip(lines, _columnar_rows(top)))))
        source.notes.append("columns stored as lists, one entry per row")
    return source


def _pandas_layout(top: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Rows of ``DataFrame.to_json()`` (orient 'columns': {col: {index: value}}) or orient 'split'."""
    if set(top) >= {"columns", "data"} and isinstance(top["columns"], list) and isinstance(top["data"], list) \
            and top["data"] and all(isinstance(r, list) for r in top["data"]):
        cols = [str(c) for c in top["columns"]]
        return [dict(zip(cols, r)) for r in top["data"]]
    values = list(top.values())
    if values and all(isinstance(v, dict) and v for v in values):
        index = list(values[0])
        if all(str(i).lstrip("-").isdigit() for i in index) and all(list(v) == index for v in values):
            return [{col: top[col][i] for col in top} for i in index]
    return None


def _ok(items: Iterator[tuple[int, Any] | RowError]) -> Iterator[tuple[int, Any]]:
    return (i for i in items if not isinstance(i, RowError))


def _list_key(top: dict[str, Any], lengths: dict[str, int] | None = None) -> str | None:
    """The key whose value holds the rows, or None when ``top`` is itself one row.

    ``lengths``: the lists' lengths when ``top`` holds only their first ``LIST_HEAD`` elements
    (``read_big_json_object``); the rule looks at no more than those."""
    from desktop_ft.core.datasets._formats import looks_like_a_row

    if _is_columnar(top, lengths):
        return next(iter(top))
    lists = {k: v for k, v in top.items() if isinstance(v, list) and v}
    if not lists or looks_like_a_row(top):
        return None
    rows_of_records = {k: v for k, v in lists.items() if all(isinstance(x, (dict, str)) for x in v[:LIST_HEAD])}
    candidates = rows_of_records or lists
    for name in LIST_KEYS:
        for k in candidates:
            if k.lower() == name:
                return k
    return max(candidates, key=lambda k: (lengths or {}).get(k, len(candidates[k])))


def _is_columnar(top: dict[str, Any], lengths: dict[str, int] | None = None) -> bool:
    """{"prompt": [...], "completion": [...]}: every value a list of the same length, of plain values."""
    values = list(top.values())
    if len(values) < 2 or not all(isinstance(v, list) for v in values):
        return False
    sizes = [len(v) for v in values] if lengths is None else [lengths[k] for k in top]
    return sizes[0] > 0 and all(n == sizes[0] for n in sizes) and \
        any(not isinstance(x, dict) for v in values for x in v[:5])


def _columnar_rows(top: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(top)
    return [{k: top[k][i] for k in keys} for i in range(len(top[keys[0]]))]


# -- CSV / TSV ---------------------------------------------------------------------------------------

def read_csv_file(path: Path, head: bytes, delimiter: str | None = None, encoding: str = "utf-8-sig") -> Source:
    """A CSV/TSV read from the file as a stream, in UTF-8 or (``encoding="utf-16"``, a file that
    starts with its byte-order mark: Excel's 'Unicode text') UTF-16; a bad byte names its line.

    The error is found by reading the file whole, as ``read_csv`` does, which only happens for a
    file that cannot be used as it is.
    """
    if delimiter is None:
        delimiter = _guess_delimiter(head.decode(encoding, errors="replace").lstrip("\ufeff"))

    def broken() -> DatasetError:
        try:
            decode_text(path, _read_bytes(path))
        except DatasetError as exc:
            return exc
        name = "UTF-16" if encoding == "utf-16" else "UTF-8"
        return DatasetError(f"is not valid {name}", path=path, hint="Save the file as UTF-8.")

    def text_stream() -> Iterator[str]:
        try:
            with open_for_scan(path, "r", encoding=encoding, newline="") as f:
                yield from f
        except UnicodeDecodeError:
            raise broken() from None

    return _read_csv_lines(path, text_stream(), delimiter)


def _read_csv_lines(path: Path, stream: Iterable[str], delimiter: str) -> Source:
    csv.field_size_limit(2**31 - 1)  # whole documents in one cell are normal in training data
    reader = csv.reader(stream, delimiter=delimiter)
    header: list[str] = []
    header_line = 0
    try:
        while not header:
            row = next(reader)
            if any(cell.strip() for cell in row):
                header = [h.strip() or f"column_{i + 1}" for i, h in enumerate(row)]
                header_line = reader.line_num
    except StopIteration:
        return Source("csv", iter(()), columns=[])
    except csv.Error as exc:
        raise DatasetError(f"cannot be read as CSV ({exc})", path=path, line=reader.line_num or 1) from None
    header = _unique(header)

    def records() -> Iterator[tuple[int, Any] | RowError]:
        start = header_line + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RowError(start, f"cannot be read as CSV ({exc}).")
                return
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
                yield RowError(line, f"has {len(row)} fields but the header has {len(header)}; a value with a "
                                     f"'{_show(delimiter)}' in it needs double quotes around it.")
                continue
            row = [cell.replace("\r\n", "\n") for cell in row[:len(header)]] + [""] * (len(header) - len(row))
            yield line, dict(zip(header, row))

    return Source("csv", records(), columns=header)


def _show(delimiter: str) -> str:
    return {"\t": "tab", ",": ",", ";": ";", "|": "|"}.get(delimiter, delimiter)


def _guess_delimiter(text: str) -> str:
    """Comma unless the header line plainly uses ';' (Excel in many locales), tab or '|'."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    outside = re.sub(r'"[^"]*"', "", first)
    counts = {d: outside.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}_{seen[n]}")
        else:
            seen[n] = 1
            out.append(n)
    return out


# -- plain text -------------------------------------------------------------------------------------

def read_text(path: Path, raw: bytes | None = None, *, markdown: bool = False) -> Source:
    """Documents for continued pre-training: paragraphs joined into chunks of about 2,000 characters.

    A chunk never splits a paragraph unless the paragraph alone is longer than a chunk (then it is cut
    at line ends); in Markdown a heading starts a new chunk. Each chunk's line is its first line.
    The file is read a line at a time (any size), or from ``raw`` when given (UTF-16, decoded whole).
    """
    lines = _text_lines(path) if raw is None else \
        iter(decode_text(path, raw).replace("\r\n", "\n").replace("\r", "\n").split("\n"))

    def records() -> Iterator[tuple[int, Any] | RowError]:
        chunk: list[str] = []
        chunk_line = 0
        size = 0
        for line, para in _paragraphs(lines):
            starts_section = markdown and para.lstrip().startswith("#")
            if chunk and (size + len(para) > TEXT_CHUNK_CHARS or starts_section):
                yield chunk_line, {"text": "\n\n".join(chunk)}
                chunk, size = [], 0
            for offset, piece in _cut(para):
                if chunk and size + len(piece) > TEXT_CHUNK_CHARS:
                    yield chunk_line, {"text": "\n\n".join(chunk)}
                    chunk, size = [], 0
                if not chunk:
                    chunk_line = line + offset
                chunk.append(piece)
                size += len(piece) + 2
        if chunk:
            yield chunk_line, {"text": "\n\n".join(chunk)}

    return Source("text", records(), columns=["text"])


def _text_lines(path: Path) -> Iterator[str]:
    """The file's lines as ``str.split("\\n")`` gives them after ``\\r\\n`` and ``\\r`` became
    ``\\n``, read a chunk at a time (a ``\\r\\n`` cut between two chunks is still one line end)."""
    carry = ""
    for chunk in _decoded_chunks(path):
        text = carry + chunk
        held_cr = bool(chunk) and text.endswith("\r")
        if held_cr:
            text = text[:-1]
        parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        carry = parts.pop() + ("\r" if held_cr else "")
        yield from parts
    yield carry


def _paragraphs(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    current: list[str] = []
    start = 0
    for i, line in enumerate(lines, start=1):
        if line.strip():
            if not current:
                start = i
            current.append(line.rstrip())
        elif current:
            yield start, "\n".join(current)
            current = []
    if current:
        yield start, "\n".join(current)


def _cut(para: str) -> Iterator[tuple[int, str]]:
    """A paragraph longer than a chunk, cut at line ends (or hard, for one enormous line)."""
    if len(para) <= TEXT_CHUNK_CHARS:
        yield 0, para
        return
    piece: list[str] = []
    first = 0
    for i, line in enumerate(para.split("\n")):
        while len(line) > TEXT_CHUNK_CHARS:
            if piece:
                yield first, "\n".join(piece)
                piece = []
            yield i, line[:TEXT_CHUNK_CHARS]
            line = line[TEXT_CHUNK_CHARS:]
        if piece and sum(len(x) + 1 for x in piece) + len(line) > TEXT_CHUNK_CHARS:
            yield first, "\n".join(piece)
            piece = []
        if not piece:
            first = i
        if line:
            piece.append(line)
    if piece:
        yield first, "\n".join(piece)


# -- columnar files and datasets --------------------------------------------------------------------

def read_parquet(path: Path) -> Source:
    try:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        columns = list(parquet.schema_arrow.names)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise DatasetError(f"cannot be read as Parquet ({_first_line(exc)})", path=path,
                           hint="Check that the file is a complete .parquet file.") from None

    def rows() -> Iterator[dict[str, Any]]:  # in batches, so max_rows reads only what it needs
        try:
            for batch in parquet.iter_batches(batch_size=1000):
                yield from batch.to_pylist()
        except Exception as exc:
            raise DatasetError(f"cannot be read as Parquet past its first rows ({_first_line(exc)})", path=path,
                               hint="The file may be cut off; export it again.") from None

    return Source("parquet", _numbered(rows()), columns=columns, unit="row")


def read_arrow(path: Path) -> Source:
    """An Arrow file: a datasets cache file (IPC stream) or a Feather/IPC file."""
    try:
        import pyarrow as pa
        import pyarrow.feather as feather

        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            table = feather.read_table(str(path))
    except Exception as exc:
        raise DatasetError(f"cannot be read as an Arrow file ({_first_line(exc)})", path=path,
                           hint="Pick the dataset's folder (save_to_disk) or export it as .parquet.") from None
    return Source("arrow", _numbered(table.to_pylist()), columns=list(table.column_names), unit="row")


def read_saved(path: Path) -> Source:
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((path / m).exists() for m in markers):
        files = sorted(p.name for p in path.iterdir() if p.suffix.lower() in
                       JSONL_SUFFIXES + JSON_SUFFIXES + CSV_SUFFIXES + TSV_SUFFIXES + PARQUET_SUFFIXES)[:5]
        hint = ("Pick one of the files inside it: " + ", ".join(files) + ".") if files else \
            "Pick a data file, or a folder written by datasets' save_to_disk."
        raise DatasetError("is a folder, but not one written by datasets' save_to_disk", path=path, hint=hint)
    try:
        from datasets import DatasetDict, load_from_disk

        loaded = load_from_disk(str(path))
    except Exception as exc:
        raise DatasetError(f"cannot be read as a saved dataset ({_first_line(exc)})", path=path) from None
    notes = []
    if isinstance(loaded, DatasetDict):
        if not loaded:
            raise DatasetError("is a saved dataset with no splits", path=path)
        split = "train" if "train" in loaded else next(iter(loaded))
        notes.append(f"split '{split}' of {', '.join(loaded)}")
        loaded = loaded[split]
    source = Source("saved", _numbered(_iter_dataset(loaded)), columns=list(loaded.column_names), unit="row")
    source.notes.extend(notes)
    return source


def read_hub(name: str) -> Source:
    repo, _, split = name.partition(":")
    offline = not _hub_reachable()
    try:
        from datasets import load_dataset as hf_load

        with _offline_mode(offline):
            loaded = hf_load(repo, split=split or "train")
    except Exception as exc:  # offline, unknown id, gated, no such split: all say the same to a user
        text = _first_line(exc)
        offline = offline or any(w in text.lower() for w in ("offline", "connection", "couldn't reach", "network"))
        where = "is not a file here, and the Hugging Face Hub cannot be reached to look for it" if offline else \
            "is not a file here and could not be loaded from the Hugging Face Hub"
        raise DatasetError(f"{where} ({text})", path=name,
                           hint="Check your internet connection, or download the data and pick the file."
                           if offline else "Check the path or the dataset id (owner/name, optionally "
                           "owner/name:split).") from None
    return Source("hub", _numbered(_iter_dataset(loaded)), columns=list(loaded.column_names), unit="row")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick connect to the Hub, so an offline machine gets an answer now rather than after retries."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or \
            os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


class _offline_mode:
    """Hack: flip huggingface_hub's and datasets' offline switches for one call (they read the environment
    once, at import), so a cached dataset still loads and nothing retries against an unreachable Hub."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> None:
        if not self.on:
            return
        import datasets.config
        import huggingface_hub.constants

        for module, attr in ((huggingface_hub.constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"),
                             (datasets.config, "HF_DATASETS_OFFLINE")):
            if hasattr(module, attr):
                self.saved.append((module, attr, getattr(module, attr)))
                setattr(module, attr, True)

    def __exit__(self, *exc: Any) -> None:
        for module, attr, value in self.saved:
            setattr(module, attr, value)


def _iter_dataset(dataset: Any) -> Iterator[dict[str, Any]]:
    for start in range(0, len(dataset), 1000):
        yield from _batch_rows(dataset[start:start + 1000])


def _batch_rows(batch: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    for i in range(n):
        yield {k: batch[k][i] for k in keys}


def _numbered(rows: Any) -> Iterator[tuple[int, Any]]:
    for i, row in enumerate(rows, start=1):
        yield i, row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
