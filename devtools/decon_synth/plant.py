"""Training documents with known ground truth: benchmark items planted in natural text.

Positive kinds plant a reference item; negative kinds must stay unflagged:

- ``verbatim_question``: the item's question, verbatim, as a paragraph of a ~2 KB document.
- ``question_answer``: question then answer (passage first, for half of the passage items).
- ``embedded_long``: question (+ answer for half) inside a ~50 KB document.
- ``light_edit``: question with 1-4 word substitutions/deletions plus case and punctuation changes.
- ``heavy_edit``: paraphrase-like question: synonym swaps, dropped articles, two clauses swapped.
- ``hard_negative_topic``: the item's content words spread over template sentences (same topic,
  no shared run).
- ``hard_negative_template``: the item's template with other content words and numbers.
- ``held_out_item``: a verbatim item of the same benchmark that is NOT in the reference.
- ``template_sibling``: a held-out item whose question, names and numbers masked, equals a
  reference item's ("What will Kai want to do next?" after a passage of its own), planted the
  way positives are (question, with its own answer or passage half the time).
- ``short_in_sentence``: a reference question of under 8 words inside a sentence of prose,
  without its answer (a few common words are no evidence of the item).
- ``clean_natural``: prose, or hard clean text (numeric tables, code, legal boilerplate).

Every negative but ``short_in_sentence`` is checked to share no normalised 8-word run with any
reference item (and its filler text always is).
Lines are 0-based, as Decon's ``training_line`` (it enumerates lines from 0).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from decon.detect.io import compression_of, open_binary_write
from decon.errors import UserError
from decon_synth import edits
from decon_synth.benchmarks import (
    BUCKET_NAMES,
    BenchmarkSelection,
    EvalItem,
    ngram_set,
    normalize_words,
    select_items,
    write_reference_dir,
)
from decon_synth.text import FillerPool, build_filler_pool, hard_paragraphs, natural_paragraphs

POSITIVE_KINDS: tuple[str, ...] = (
    "verbatim_question",
    "question_answer",
    "embedded_long",
    "light_edit",
    "heavy_edit",
)
NEGATIVE_KINDS: tuple[str, ...] = (
    "hard_negative_topic",
    "hard_negative_template",
    "held_out_item",
    "template_sibling",
    "short_in_sentence",
    "clean_natural",
)
# Negatives of the default simple mode's rules (a template question or a short question is no
# item's text on its own); the similarity modes measure likeness and may flag them. Generated
# only with `CorpusSpec.rule_negatives` (or an explicit count).
RULE_NEGATIVE_KINDS: tuple[str, ...] = ("template_sibling", "short_in_sentence")
ALL_KINDS: tuple[str, ...] = POSITIVE_KINDS + NEGATIVE_KINDS
MALFORMED_KIND = "malformed"
COMPRESSIONS: tuple[str, ...] = ("none", "gz", "zst", "bz2", "xz")
# The file name suffix of each; detect.io reads and writes by suffix.
_EXT = {"none": "", "gz": ".gz", "zst": ".zst", "bz2": ".bz2", "xz": ".xz"}
SHARED_RUN = 8  # negatives share no normalised run of this many words with the reference


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate. `kind_counts` overrides `docs_per_kind` per kind."""

    seed: int = 0
    benchmarks: tuple[str, ...] | None = None
    items_per_benchmark: int = 10
    reference_extra_per_benchmark: int = 0  # unplanted reference items (realistic statistics)
    held_out_per_benchmark: int = 3
    docs_per_kind: int = 30
    kind_counts: Mapping[str, int] = field(default_factory=dict)
    files: int = 4
    subdirs: tuple[str, ...] = ("part-a", "part-b")
    compression: str = "gz"  # one of COMPRESSIONS, or "mixed" (cycles through them per file)
    content_key: str = "text"
    malformed_lines: int = 0
    doc_chars: int = 2000
    long_doc_chars: int = 50_000
    rule_negatives: bool = False  # also generate RULE_NEGATIVE_KINDS

    def count(self, kind: str) -> int:
        default = 0 if kind in RULE_NEGATIVE_KINDS and not self.rule_negatives else None
        return int(self.kind_counts.get(kind, self.docs_per_kind if default is None else default))

    def validate(self) -> None:
        if self.compression not in (*COMPRESSIONS, "mixed"):
            raise UserError(f"compression {self.compression!r}: use one of {COMPRESSIONS}/mixed")
        unknown = set(self.kind_counts) - set(ALL_KINDS)
        if unknown:
            raise UserError(f"unknown kinds {sorted(unknown)}; known: {', '.join(ALL_KINDS)}")
        if self.files < 1 or not self.subdirs or not self.content_key:
            raise UserError("files must be >= 1, subdirs and content_key non-empty")


@dataclass(frozen=True)
class PlantedDoc:
    """One training document before it is placed in a file."""

    text: str
    kind: str
    item: EvalItem | None = None
    planted: str = ""  # the planted (possibly edited) item text, "" for clean documents
    edits: int = 0


@dataclass(frozen=True)
class TruthRecord:
    """Ground truth of one training line (`line` is 0-based, like Decon's training_line)."""

    file: str  # path relative to the train/ root, with compression suffix
    line: int
    id: str
    kind: str
    positive: bool
    eval_key: str | None = None
    eval_instance_index: int | None = None
    bucket: str | None = None
    n_words: int | None = None
    edits: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping) -> TruthRecord:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class CorpusManifest:
    """Where make_corpus wrote things, and how much."""

    root: Path
    reference_dir: Path
    train_dir: Path
    truth_path: Path
    reference_items: int
    documents: int
    files: tuple[str, ...]
    bytes_uncompressed: int
    docs_per_kind: dict[str, int]


# ---------------------------------------------------------------------------- documents


def _round_robin_by_bucket(items: list[EvalItem], rng: random.Random) -> list[EvalItem]:
    """Items ordered so consecutive picks cycle through the length buckets."""
    pools = {name: [it for it in items if it.bucket == name] for name in BUCKET_NAMES}
    for pool in pools.values():
        rng.shuffle(pool)
    order: list[EvalItem] = []
    while any(pools.values()):
        for name in BUCKET_NAMES:
            if pools[name]:
                order.append(pools[name].pop())
    return order


def _cycle(items: list[EvalItem], n: int) -> list[EvalItem]:
    return [items[i % len(items)] for i in range(n)] if items else []


class RunGuard:
    """Tells whether a text shares a normalised run of SHARED_RUN words with any reference item,
    or contains the whole question of a reference item shorter than that."""

    def __init__(self, items: Iterable[EvalItem]):
        items = list(items)
        self.grams = ngram_set(items, SHARED_RUN)
        self.short: dict[int, set[tuple[str, ...]]] = {}
        for item in items:
            words = tuple(normalize_words(item.question))
            if len(words) < SHARED_RUN:
                self.short.setdefault(len(words), set()).add(words)

    def hit(self, text: str) -> bool:
        words = normalize_words(text)
        n = SHARED_RUN
        if any(tuple(words[i : i + n]) in self.grams for i in range(len(words) - n + 1)):
            return True
        return any(
            tuple(words[i : i + length]) in runs
            for length, runs in self.short.items()
            for i in range(len(words) - length + 1)
        )


# Sentence pieces around a short question planted mid-sentence (no unit of its own).
_SENTENCE_LEADS = (
    "In the second act the narrator wonders, almost in passing, whether",
    "Nobody at the meeting could say for certain if",
    "The old notes mention, between two unrelated remarks, that",
    "She kept the letter where she had written that",
)
_SENTENCE_TAILS = (
    "before turning back to the garden and the long evening ahead.",
    "and then the conversation drifted to the price of bread.",
    "while the rain kept on falling over the harbour.",
    "which nobody in the room seemed to find remarkable.",
)


class _Builder:
    """Builds the documents of one corpus (holds the seeded RNG and the pools)."""

    def __init__(self, spec: CorpusSpec, selection: BenchmarkSelection, pool: FillerPool):
        self.spec = spec
        self.rng = random.Random(f"{spec.seed}:documents")
        self.guard = RunGuard(selection.reference)
        self.pool = pool.without_runs(self.guard.hit)
        self.vocabulary = sorted(
            {
                w
                for par in self.pool.prose[:400]
                for w in normalize_words(par)
                if w.isalpha() and len(w) >= 4 and w not in edits.STOPWORDS
            }
        )
        self.selection = selection
        self.templates = _template_items(selection.reference)

    def identified(self, item: EvalItem, planted: str) -> str:
        """A template question ("What will Robin want to do next?", shared by hundreds of
        items) is planted with its passage (or answer): alone it is no item's text."""
        if item.key not in self.templates:
            return planted
        if item.passage:
            return item.passage + "\n\n" + planted
        return planted + "\n" + (item.answer or "")

    def wrap(self, planted: str, chars: int, hard: bool = False) -> str:
        """`planted` as one paragraph at a random position among filler paragraphs."""
        fill = hard_paragraphs if hard else natural_paragraphs
        paragraphs = fill(self.pool, self.rng, chars)
        if planted:
            paragraphs.insert(self.rng.randint(0, len(paragraphs)), planted)
        return "\n\n".join(paragraphs)

    def short_chars(self) -> int:
        return int(self.spec.doc_chars * self.rng.uniform(0.5, 1.5))

    def question_text(self, item: EvalItem) -> str:
        prefix = self.rng.choice(("", "", "Q: ", "Question: ", "Exercise. "))
        return prefix + item.question

    def qa_text(self, item: EvalItem) -> str:
        parts = []
        if item.passage and self.rng.random() < 0.5:
            parts.append(item.passage)
        sep = self.rng.choice(("\n", "\nAnswer: ", " ", "\n\n", "\nA: "))
        parts.append(item.question + sep + (item.answer or ""))
        return "\n\n".join(parts)

    def positive(self, kind: str, item: EvalItem) -> PlantedDoc:
        n_edits = 0
        if kind == "verbatim_question":
            planted = self.identified(item, self.question_text(item))
            text = self.wrap(planted, self.short_chars())
        elif kind == "question_answer":
            planted = self.qa_text(item)
            text = self.wrap(planted, self.short_chars())
        elif kind == "embedded_long":
            qa = self.rng.random() < 0.5
            planted = self.qa_text(item) if qa else self.identified(item, item.question)
            text = self.wrap(planted, self.spec.long_doc_chars)
        else:
            edit = edits.light_edit if kind == "light_edit" else edits.heavy_edit
            planted, n_edits = edit(item.question, self.rng)
            if item.answer and self.rng.random() < 0.5:
                planted = planted + "\n" + item.answer
            else:
                planted = self.identified(item, planted)
            text = self.wrap(planted, self.short_chars())
        return PlantedDoc(text, kind, item, planted, n_edits)

    def negative(self, kind: str, item: EvalItem | None) -> PlantedDoc | None:
        if kind == "clean_natural":
            hard = self.rng.random() < 0.5
            text = self.wrap("", self.short_chars(), hard=hard)
            return PlantedDoc(text, kind) if not self.guard.hit(text) else None
        assert item is not None
        if kind == "short_in_sentence":
            return self.short_in_sentence(item)
        for attempt in range(6):
            if kind in ("held_out_item", "template_sibling"):
                planted = self.question_text(item)
                if item.answer and self.rng.random() < 0.5:
                    planted += "\n" + item.answer
            elif kind == "hard_negative_topic":
                words = edits.content_words(" ".join(t for t in (item.question, item.answer) if t))
                planted = edits.topic_sentences(words or ["question"], self.rng)
            else:  # hard_negative_template
                share = 0.15 * attempt
                planted = edits.template_rewrite(item.question, self.rng, self.vocabulary, share)
            if self.guard.hit(planted):
                continue
            text = self.wrap(planted, self.short_chars())
            if not self.guard.hit(text):
                return PlantedDoc(text, kind, item, planted)
        return None

    def short_in_sentence(self, item: EvalItem) -> PlantedDoc | None:
        """A short reference question, lowercased and without its punctuation, in mid-sentence."""
        if item.n_words >= 8:
            return None
        lead = self.rng.choice(_SENTENCE_LEADS)
        tail = self.rng.choice(_SENTENCE_TAILS)
        planted = f"{lead} {' '.join(normalize_words(item.question))} {tail}"
        filler = self.wrap("", self.short_chars())
        if self.guard.hit(filler):
            return None
        paragraphs = filler.split("\n\n")
        at = self.rng.randrange(len(paragraphs))
        paragraphs[at] = paragraphs[at].rstrip() + " " + planted
        return PlantedDoc("\n\n".join(paragraphs), "short_in_sentence", item, planted)

    def build(self) -> list[PlantedDoc]:
        docs: list[PlantedDoc] = []
        # A fresh bucket round robin per kind: every kind covers every length bucket evenly
        # (as far as the reference has items there), with its own choice of items.
        plantable = list(self.selection.plantable)
        for kind in POSITIVE_KINDS:
            order = _round_robin_by_bucket(plantable, self.rng)
            docs.extend(self.positive(kind, item) for item in _cycle(order, self.spec.count(kind)))
        pools = {
            "held_out_item": self.selection.held_out,
            "template_sibling": self.selection.template_siblings,
            "short_in_sentence": [it for it in plantable if it.n_words < 8],
        }
        for kind in NEGATIVE_KINDS:
            pool = pools.get(kind, plantable)
            source = _round_robin_by_bucket(list(pool), self.rng)
            want = self.spec.count(kind)
            made: list[PlantedDoc] = []
            tries = 0
            while len(made) < want and tries < 4 * want + 10:
                item = source[tries % len(source)] if source else None
                tries += 1
                if kind != "clean_natural" and item is None:
                    break
                doc = self.negative(kind, item)
                if doc is not None:
                    made.append(doc)
            docs.extend(made)
        return docs


def _template_items(reference: Iterable[EvalItem]) -> set[tuple[str, int]]:
    """Keys of the reference items whose masked question is a template of their benchmark (as
    `decon.detect.identity` decides it)."""
    from decon.detect.identity import TEMPLATE_MIN_INSTANCES, masked_question

    groups: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for item in reference:
        groups.setdefault((item.eval_key, masked_question(item.question)), []).append(item.key)
    return {key for keys in groups.values() if len(keys) >= TEMPLATE_MIN_INSTANCES for key in keys}


def build_documents(
    spec: CorpusSpec, selection: BenchmarkSelection, pool: FillerPool | None = None
) -> list[PlantedDoc]:
    """All documents of a corpus, grouped by kind (positive kinds first). Deterministic."""
    spec.validate()
    return _Builder(spec, selection, pool or build_filler_pool()).build()


# ---------------------------------------------------------------------------- files


def _set_dotted(record: dict, dotted: str, value: str) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        record = record.setdefault(key, {})
    record[keys[-1]] = value


def _malformed_line(i: int, doc_id: str) -> bytes:
    variants = (
        b'{"id": "' + doc_id.encode() + b'", "text": "truncated json',
        b"this line is not json at all",
        json.dumps({"id": doc_id, "other_field": "no content key here"}).encode(),
        b'{"id": "' + doc_id.encode() + b'", "text": "bad bytes \xff\xfe here"}',
    )
    return variants[i % len(variants)]


def file_names(spec: CorpusSpec) -> list[str]:
    """Relative paths of the training files; the same names repeat in every subdir."""
    names = []
    for j in range(spec.files):
        comp = COMPRESSIONS[j % len(COMPRESSIONS)] if spec.compression == "mixed" else None
        ext = _EXT[comp or spec.compression]
        sub = spec.subdirs[j % len(spec.subdirs)]
        names.append(f"{sub}/shard-{j // len(spec.subdirs):03d}.jsonl{ext}")
    return names


def write_training_files(
    docs: list[PlantedDoc], train_dir: Path, spec: CorpusSpec
) -> tuple[list[TruthRecord], int]:
    """Shuffle `docs` into the training files (JSONL, content under `spec.content_key`) and
    return the ground truth of every line and the uncompressed byte count."""
    rng = random.Random(f"{spec.seed}:files")
    order = list(range(len(docs)))
    rng.shuffle(order)
    names = file_names(spec)
    lines: dict[str, list[tuple[bytes, TruthRecord | None]]] = {n: [] for n in names}
    for pos, doc_index in enumerate(order):
        doc = docs[doc_index]
        name = names[pos % len(names)]
        doc_id = f"synth-{spec.seed}-{pos:06d}"
        record: dict = {"id": doc_id}
        _set_dotted(record, spec.content_key, doc.text)
        item = doc.item
        truth = TruthRecord(
            file=name,
            line=-1,
            id=doc_id,
            kind=doc.kind,
            positive=doc.kind in POSITIVE_KINDS,
            eval_key=item.eval_key if item else None,
            eval_instance_index=item.eval_instance_index if item else None,
            bucket=item.bucket if item else None,
            n_words=item.n_words if item else None,
            edits=doc.edits,
        )
        lines[name].append((json.dumps(record, ensure_ascii=False).encode("utf-8"), truth))
    for i in range(spec.malformed_lines):
        name = names[i % len(names)]
        doc_id = f"synth-{spec.seed}-bad-{i:04d}"
        at = rng.randint(0, len(lines[name]))
        bad = TruthRecord(file=name, line=-1, id=doc_id, kind=MALFORMED_KIND, positive=False)
        lines[name].insert(at, (_malformed_line(i, doc_id), bad))
    truths: list[TruthRecord] = []
    total = 0
    for name in names:
        payload = b"".join(line + b"\n" for line, _ in lines[name])
        total += len(payload)
        path = train_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_binary_write(path, compression_of(name)) as fh:
            fh.write(payload)
        for line_no, (_, truth) in enumerate(lines[name]):
            if truth is not None:
                truths.append(_with_line(truth, line_no))
    return truths, total


def _with_line(truth: TruthRecord, line: int) -> TruthRecord:
    return TruthRecord(**{**asdict(truth), "line": line})


def write_truth(truths: Iterable[TruthRecord], path: Path) -> None:
    """truth.jsonl: one record per training line, sorted by (file, line)."""
    ordered = sorted(truths, key=lambda t: (t.file, t.line))
    path.write_text("".join(t.to_json() + "\n" for t in ordered), encoding="utf-8")


def read_truth(path: Path) -> list[TruthRecord]:
    """Records of a truth.jsonl file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read truth file ({exc.strerror})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(TruthRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"{path}:{n}: not a truth record ({exc})") from None
    return out


def make_corpus(out_dir: Path, spec: CorpusSpec) -> CorpusManifest:
    """Write ``out_dir/reference/`` (Decon eval records), ``out_dir/train/`` (JSONL shards),
    ``out_dir/truth.jsonl`` and ``out_dir/spec.json``. Same spec, same bytes."""
    spec.validate()
    selection = select_items(
        spec.benchmarks,
        spec.items_per_benchmark,
        spec.held_out_per_benchmark,
        spec.seed,
        spec.reference_extra_per_benchmark,
    )
    if not selection.reference:
        raise UserError("no benchmark items selected (are the data packages installed?)")
    docs = build_documents(spec, selection)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference_dir = out_dir / "reference"
    train_dir = out_dir / "train"
    write_reference_dir(selection.reference, reference_dir)
    truths, total = write_training_files(docs, train_dir, spec)
    truth_path = out_dir / "truth.jsonl"
    write_truth(truths, truth_path)
    spec_dict = asdict(spec)
    spec_dict["kind_counts"] = dict(spec.kind_counts)
    (out_dir / "spec.json").write_text(json.dumps(spec_dict, indent=2, sort_keys=True) + "\n")
    counts: dict[str, int] = {}
    for doc in docs:
        counts[doc.kind] = counts.get(doc.kind, 0) + 1
    return CorpusManifest(
        root=out_dir,
        reference_dir=reference_dir,
        train_dir=train_dir,
        truth_path=truth_path,
        reference_items=len(selection.reference),
        documents=len(docs),
        files=tuple(file_names(spec)),
        bytes_uncompressed=total,
        docs_per_kind=counts,
    )


def plant_records(records: list[dict], documents: list[str], seed: int) -> list[str]:
    """Each document with its record (question, then answer) inserted as a paragraph at a
    seeded place: how the natural-text precision checks plant real reference records."""
    rng = random.Random(seed)
    out = []
    for record, text in zip(records, documents, strict=True):
        item = record["question"] + ("\n" + record["answer"] if record.get("answer") else "")
        paragraphs = text.split("\n\n")
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), item)
        out.append("\n\n".join(paragraphs))
    return out
