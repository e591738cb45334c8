"""drf-spectacular hooks (SPECTACULAR_SETTINGS). Each endpoint's shapes and examples live next to its view."""


def strip_trailing_slashes(result, generator, request, public):
    """Postprocessing hook: the contract's paths have no trailing slash (the routes accept both;
    `/?$` in a re_path renders as a trailing slash)."""
    result["paths"] = {(path.rstrip("/") or "/"): item for path, item in result.get("paths", {}).items()}
    return result


# Response shapes that coincide on some bodies: both shapes of /predictions/current read the same on
# a page with no servers (`{"predictions": {}, "alerts": [], …}`), which `oneOf` then rejects as
# matching both. `anyOf` says what we serve: a body in either shape.
ANY_OF_COMPONENTS = ("PredictionsCurrentResponse",)


def either_shape_any_of(result, generator, request, public):
    """Postprocessing hook: the components above list their shapes under anyOf, not oneOf."""
    schemas = result.get("components", {}).get("schemas", {})
    for name in ANY_OF_COMPONENTS:
        if "oneOf" in schemas.get(name, {}):
            schemas[name]["anyOf"] = schemas[name].pop("oneOf")
    return result
