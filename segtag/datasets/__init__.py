"""Readers of training data: extracted-features directories and YouTube-8M TFRecords."""

from segtag.datasets.example import Example, Segment, collate, random_window

__all__ = ["Example", "Segment", "collate", "random_window"]
