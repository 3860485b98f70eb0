"""JSON bodies with a size cap. DRF reads the request stream itself, so Django's
DATA_UPLOAD_MAX_MEMORY_SIZE never applies to it."""

from __future__ import annotations

import io
import json
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


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
        parsed = super().parse(io.BytesIO(data), media_type, parser_context)
        try:
            # JSON may spell lone surrogates ("\ud800"), which are not text: nothing could echo,
            # store or log them as UTF-8, so the body is refused here.
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError("the body holds a lone surrogate (U+D800 to U+DFFF), which is not valid Unicode") from None
        return parsed
