"""A slow, plain reading of what Go's encoding/json stores for a Report (the oracle of tests/unit/test_go_json.py).

The original decodes ``Report`` into ``map[string]*json.RawMessage``: each
key is unquoted into a Go string (a repeated key: the later value wins, as
a map assignment), each value kept as the bytes sent. ``json.Marshal`` then
writes the keys sorted by their bytes, each with ``appendString`` (HTML
escaping on), and each value with ``appendCompact(escape=true)``. This
module does that byte by byte, for valid JSON only, without msgspec.
"""

from __future__ import annotations

import json

WHITESPACE = b" \t\r\n"
STRIPPED = ("system", "fingerprints", "skips", "info", "pass", "analysis_metadata")


def _skip_space(text: bytes, i: int) -> int:
    while i < len(text) and text[i] in WHITESPACE:
        i += 1
    return i


def _end_of_string(text: bytes, i: int) -> int:
    """``text[i]`` is the opening quote: the index after the closing one."""
    i += 1
    while text[i] != ord('"'):
        i += 2 if text[i] == ord("\\") else 1
    return i + 1


def end_of_value(text: bytes, i: int) -> int:
    """The index after the JSON value starting at ``text[i]`` (valid JSON assumed)."""
    c = text[i]
    if c == ord('"'):
        return _end_of_string(text, i)
    if c in b"[{":
        closing = ord("]") if c == ord("[") else ord("}")
        i = _skip_space(text, i + 1)
        while text[i] != closing:
            if c == ord("{"):
                i = _skip_space(text, _end_of_string(text, i))
                i = _skip_space(text, i + 1)  # the colon
            i = _skip_space(text, end_of_value(text, i))
            if text[i] == ord(","):
                i = _skip_space(text, i + 1)
        return i + 1
    while i < len(text) and text[i] not in b",]}" and text[i] not in WHITESPACE:
        i += 1  # a number or a literal
    return i


def object_pairs(text: bytes) -> list[tuple[bytes, bytes]]:
    """The (key as sent, value as sent) pairs of the JSON object ``text``, in order."""
    pairs = []
    i = _skip_space(text, 0) + 1
    i = _skip_space(text, i)
    while text[i] != ord("}"):
        end = _end_of_string(text, i)
        key = text[i:end]
        i = _skip_space(text, _skip_space(text, end) + 1)
        end = end_of_value(text, i)
        pairs.append((key, text[i:end]))
        i = _skip_space(text, end)
        if text[i] == ord(","):
            i = _skip_space(text, i + 1)
    return pairs


def compact(raw: bytes) -> bytes:
    """appendCompact(escape=true): whitespace outside strings dropped; <, >, &, U+2028, U+2029 escaped."""
    out = bytearray()
    in_string = escaped = False
    i = 0
    while i < len(raw):
        c = raw[i]
        if raw[i:i + 3] in (b"\xe2\x80\xa8", b"\xe2\x80\xa9"):
            out += b"\\u202" + (b"8" if raw[i + 2] == 0xA8 else b"9")
            i += 3
            continue
        if c in b"<>&":
            out += b"\\u00%02x" % c
        elif in_string:
            out.append(c)
            if escaped:
                escaped = False
            elif c == ord("\\"):
                escaped = True
            elif c == ord('"'):
                in_string = False
        elif c in WHITESPACE:
            pass
        else:
            out.append(c)
            in_string = c == ord('"')
        i += 1
    return bytes(out)


def go_string(text: str) -> bytes:
    """appendString(escapeHTML=true) of a Go string holding valid UTF-8 (Go 1.22 and later)."""
    out = bytearray(b'"')
    for char in text:
        code = ord(char)
        if char in '"\\':
            out += b"\\" + char.encode()
        elif char in "\b\f\n\r\t":
            out += {"\b": b"\\b", "\f": b"\\f", "\n": b"\\n", "\r": b"\\r", "\t": b"\\t"}[char]
        elif code < 0x20 or char in "<>&":
            out += b"\\u00%02x" % code
        elif char in "\u2028\u2029":
            out += b"\\u%04x" % code
        else:
            out += char.encode("utf-8")
    return bytes(out + b'"')


def stored_report(report: bytes) -> bytes:
    """The bytes the original stores for the Report object ``report`` (valid JSON, valid UTF-8)."""
    kept: dict[str, bytes] = {}
    for key, value in object_pairs(report):
        kept[json.loads(key)] = value
    for key in STRIPPED:
        kept.pop(key, None)
    ordered = sorted(kept, key=lambda key: key.encode("utf-8"))
    return b"{" + b",".join(go_string(key) + b":" + compact(kept[key]) for key in ordered) + b"}"
