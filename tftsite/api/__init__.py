"""API plumbing shared by every app's views: API keys, rate limits, the JSON parser, the error
handler, middleware and the base view classes. Apps import from here; nothing here imports an
app's views or forecasting code."""
