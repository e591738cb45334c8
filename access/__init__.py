"""API plumbing every app's views share: API keys (model, admin, checks), rate limits, the JSON parser,
the error bodies and handler, middleware and the base view classes.

The lowest app of the project: it imports no other app (an import-linter contract says so), so
`ingest`, `forecasting` and `tftsite` can all build on it without an import loop. Errors raised by
other apps reach the handler by subclassing `access.errors.ApiError`."""
