"""The QR code of the two-factor key's ``otpauth://`` link, as inline SVG: what a phone's authenticator app scans.

segno (pure Python, no dependencies) draws it; the SVG is paths and colours only, no text from outside and no
style attribute, so the pages' Content-Security-Policy (no images, one hashed stylesheet) lets it show. Should segno
be missing (an install that predates the dependency) the page shows the key and the link alone, with one WARNING.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


def svg(text: str) -> str:
    """``text`` as an inline ``<svg>`` QR code (error correction M, 4 px modules, white quiet zone), or ""."""
    try:
        import segno  # imported on use: the pages work without it
    except ImportError:
        _missing()
        return ""
    return str(segno.make(text, error="m").svg_inline(scale=4, light="#fff"))


@functools.cache
def _missing() -> None:
    log.warning("account page: segno is not installed; the two-factor page shows no QR code")
