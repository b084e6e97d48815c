"""Pure domain code: models and schedule maths. No I/O, no SDK imports."""
