"""Page/per_page checks shared by every listing."""

from __future__ import annotations

from loupe.errors import InvalidArgument

MAX_PER_PAGE = 1000
MAX_PAGE = 2**32 - 1  # Clarifai's page is a uint32


def page_window(page: int, per_page: int, max_per_page: int = MAX_PER_PAGE) -> tuple[int, int]:
    """(offset, limit) for a 1-based page."""
    if page < 1 or page > MAX_PAGE:
        raise InvalidArgument(f"page must be between 1 and {MAX_PAGE}, got {page}")
    if per_page < 1 or per_page > max_per_page:
        raise InvalidArgument(f"per_page must be between 1 and {max_per_page}, got {per_page}")
    return (page - 1) * per_page, per_page
