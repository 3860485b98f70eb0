"""core.parsers: the depth count before parsing must itself be cheap on hostile text."""

from __future__ import annotations

import pytest

from core.parsers import _STRUCTURE, JSONTooDeep, json_depth_check


def test_an_unclosed_string_full_of_escaped_quotes_is_one_token_read_once() -> None:
    # Before, each escaped quote started a new attempt that scanned to the end of the text
    # (quadratic: 11.8 s for a 64 KiB body, holding the GIL); now the unclosed string is one token.
    text = '"' + '\\"' * 32_000

    assert [m.group() for m in _STRUCTURE.finditer(text)] == [text]
    json_depth_check(text, limit=2)  # no brackets outside strings: nothing to refuse


def test_brackets_in_strings_do_not_count_and_real_nesting_does() -> None:
    json_depth_check('{"a": "[[[[{{{{", "b": ["\\"]]]"]}', limit=2)
    with pytest.raises(JSONTooDeep):
        json_depth_check('{"a": [[1]]}', limit=2)
