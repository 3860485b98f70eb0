"""JSON bodies with a size cap and a nesting cap. DRF reads the request stream itself, so Django's
DATA_UPLOAD_MAX_MEMORY_SIZE never applies to it.

Python's JSON parser recurses once per level and raises RecursionError (not ValueError) near
1,000 levels, which every caller would turn into a 500: JSON from clients (bodies, cookies,
websocket messages) is read through `json_loads`, which refuses text nested deeper than
FEDML_MAX_JSON_DEPTH before parsing it.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding


class JSONTooDeep(ValueError):
    """JSON text nested deeper than the cap: a ValueError, as every other malformed JSON."""


# A whole string literal, or one bracket outside strings. An unclosed string runs to the end of the
# text: otherwise every quote of `"\"\"\"...` would rescan to the end (quadratic, seconds per body).
_STRUCTURE = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\Z)|[\[\]{}]', re.DOTALL)


def json_depth_check(text: str, *, limit: int | None = None) -> None:
    """Refuse JSON text whose arrays and objects nest deeper than `limit` (default FEDML_MAX_JSON_DEPTH).
    Brackets inside strings do not count; malformed text is left for the parser to refuse."""
    limit = settings.FEDML_MAX_JSON_DEPTH if limit is None else limit
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                raise JSONTooDeep(f"the JSON is nested deeper than {limit} levels")
        elif token in ("]", "}"):
            depth -= 1


def json_loads(data: str | bytes) -> Any:
    """`json.loads` for text from clients: every refusal, too deep included, is a ValueError."""
    text = data.decode(json.detect_encoding(data)) if isinstance(data, bytes | bytearray) else data
    json_depth_check(text)
    return json.loads(text)


class LimitedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.FEDML_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise ParseError(f"the body is larger than {limit} bytes")
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise ParseError(f"the body is larger than {limit} bytes")
        try:
            # Bytes that are not text in the body's charset become U+FFFD here (never a bracket or
            # quote); DRF's parse below refuses them.
            json_depth_check(data.decode(get_encoding(parser_context or {}), errors="replace"))
        except JSONTooDeep as exc:
            raise ParseError(f"the body is nested deeper than {settings.FEDML_MAX_JSON_DEPTH} levels") from exc
        parsed = super().parse(io.BytesIO(data), media_type, parser_context)
        try:
            # JSON may spell lone surrogates ("\ud800"), which are not text: nothing could echo,
            # store or log them as UTF-8, so the body is refused here.
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError("the body holds a lone surrogate (U+D800 to U+DFFF), which is not valid Unicode") from None
        return parsed
