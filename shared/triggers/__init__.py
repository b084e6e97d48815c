"""Function triggers as blueprints: each parses its input, calls one service, shapes the output."""
