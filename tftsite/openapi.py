"""drf-spectacular hooks (SPECTACULAR_SETTINGS). Each endpoint's shapes and examples live next to its view."""


def strip_trailing_slashes(result, generator, request, public):
    """Postprocessing hook: the contract's paths have no trailing slash (the routes accept both;
    `/?$` in a re_path renders as a trailing slash)."""
    result["paths"] = {(path.rstrip("/") or "/"): item for path, item in result.get("paths", {}).items()}
    return result
