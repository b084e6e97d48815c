"""Integrations: plugins that deliver a new secret to where it is used (see ``base``)."""
