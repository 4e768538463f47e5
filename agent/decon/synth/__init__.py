"""Ground-truth contamination corpus: real benchmark items planted in natural text.

- `decon.synth.benchmarks`: benchmark items from installed data packages, Decon eval records.
- `decon.synth.text`: natural and hard filler text from the Python installation.
- `decon.synth.plant`: documents per contamination kind, training files, truth.jsonl.
- `decon.synth.evaluate`: recall/precision of a report directory against the truth.

Command line: ``python -m decon.synth make-corpus ...`` and ``python -m decon.synth evaluate ...``.
"""
