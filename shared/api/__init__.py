"""The HTTP API edge: request parsing, problem details, the OpenAPI document."""
