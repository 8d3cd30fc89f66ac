"""What Go's encoding/json writes for a map of raw JSON values, piece by piece (the original's stored report).

``json.Marshal(map[string]*json.RawMessage)`` writes the keys sorted, each
as Go writes a string (``object_key``), and each value as ``appendCompact``
with HTML escaping writes a RawMessage (``compact_value``).
tests/unit/test_go_json.py holds the bytes, with the lines of encoding/json
they follow.
"""

from __future__ import annotations

import msgspec

_format = msgspec.json.format

# appendString with escapeHTML: printable ASCII but '"', '\\', '<', '>', '&' is written as is (htmlSafeSet;
# DEL included); the short escapes of Go 1.22 and later; any other byte below 0x20 and <>& as \u00XX.
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_KEY_ESCAPES = {chr(code): f"\\u{code:04x}" for code in range(0x20)} | {c: f"\\u{ord(c):04x}" for c in "<>&"}
_KEY_ESCAPES |= _SHORT_ESCAPES | {"\u2028": "\\u2028", "\u2029": "\\u2029"}
_KEY_TRANSLATION = str.maketrans(_KEY_ESCAPES)
# Keys written once each: a report has a handful of distinct ones; past this many (hostile input) no more are kept.
_KEY_CACHE_LIMIT = 4096
_key_cache: dict[str, bytes] = {}

# The two non-ASCII letters whose fold set (unicode.SimpleFold's orbit, foldRune) holds an ASCII letter; İ and ı
# are each an orbit of their own there.
_FOLDED_TO_ASCII = {"\u212a": "K", "\u017f": "S"}


def object_key(key: str) -> bytes:
    """``"key":`` as encoding/json writes a map key (a Go string, so escapes as the writer chose, not as sent)."""
    encoded = _key_cache.get(key)
    if encoded is None:
        encoded = b'"' + key.translate(_KEY_TRANSLATION).encode("utf-8") + b'":'
        if len(_key_cache) < _KEY_CACHE_LIMIT:
            _key_cache[key] = encoded
    return encoded


def compact_value(raw: msgspec.Raw | bytes) -> bytes:
    """A valid JSON value as appendCompact(escape=true) writes it: whitespace outside strings removed, every
    other byte kept, except <, >, & (only ever inside strings) and U+2028, U+2029 written as escapes."""
    text = _format(raw, indent=-1)  # msgspec: whitespace removed, strings and numbers copied as they are
    if b"<" in text or b">" in text or b"&" in text:
        text = text.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")
    if not text.isascii():
        text = text.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return text


def fold_name(name: str) -> str:
    """A key folded as Go's decoder folds it to match a struct field: equal for names bytes.EqualFold deems equal,
    as far as the field names (ASCII) are concerned."""
    if name.isascii():
        return name.upper()
    return "".join(_FOLDED_TO_ASCII.get(char, char.upper() if char.isascii() else char) for char in name)
