"""Helpers with no knowledge of models or data, used by several packages."""
