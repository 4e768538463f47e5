"""Ground-truth contamination corpus: real benchmark items planted in natural text.

- `decon_synth.benchmarks`: benchmark items from installed data packages, Decon eval records.
- `decon_synth.text`: natural and hard filler text from the Python installation.
- `decon_synth.plant`: documents per contamination kind, training files, truth.jsonl.
- `decon_synth.evaluate`: recall/precision of a report directory against the truth.

Command line: ``python -m decon_synth make-corpus ...`` and ``python -m decon_synth evaluate ...``.
"""
