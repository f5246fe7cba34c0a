from __future__ import annotations

import pytest

from relentad.smtp.replies import with_enhanced_code


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
        ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
        ("552 Error: Too much mail data", "552 5.3.4 Error: Too much mail data"),
        ("550 5.1.1 No such user", "550 5.1.1 No such user"),
        ("220 mx.example.test ESMTP", "220 mx.example.test ESMTP"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
        ("221 Bye", "221 2.0.0 Bye"),
    ],
)
def test_every_reply_gets_an_enhanced_code(reply: str, expected: str) -> None:
    assert with_enhanced_code(reply) == expected
