"""The operators' page (contract §12): static files, read from the package once, when the app is made.

``index.html`` loads ``style.css``, ``app.js`` and the vendored charting library, uPlot 1.6.32 (MIT,
``uPlot.LICENSE``), unmodified from its npm release; nothing is built. A wheel carries these files
like the Python ones, so an installed service serves them too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

#: What ``GET /dashboard/{asset}`` serves: each name with its media type.
ASSETS: Final = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}
PAGE: Final = "index.html"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    #: A strong validator: a digest of the body.
    etag: str


@dataclass(frozen=True, slots=True)
class Dashboard:
    page: Asset
    assets: dict[str, Asset]


def load() -> Dashboard:
    """The page and its files; a missing one raises, so the service does not start without them."""
    folder = resources.files(__name__)

    def read(name: str, content_type: str) -> Asset:
        body = (folder / name).read_bytes()
        return Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    return Dashboard(
        page=read(PAGE, "text/html"),
        assets={name: read(name, content_type) for name, content_type in ASSETS.items()},
    )
