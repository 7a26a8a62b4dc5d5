"""Frozen image (and text) embedders. See `base.Backbone`; `registry.load_backbone` builds them by id."""
