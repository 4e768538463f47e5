"""Contamination detection: pure core (text in, matches out) plus file I/O around it."""
