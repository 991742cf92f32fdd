"""segtag: a streaming temporal-segment video tagger."""

__version__ = "0.1.0"
