"""Detection options: names and defaults follow Decon's simple mode (src/common/config.rs)."""

from __future__ import annotations

from dataclasses import dataclass, fields

# Decon's default punctuation set: ASCII punctuation plus curly quotes and the em dash.
DEFAULT_PUNCTUATION_CHARS = "!'\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u201c\u201d\u2018\u2019\u2014"

# Help text per option, shown by `decon detect --help` (every option is documented here).
OPTION_HELP: dict[str, str] = {
    "mode": "detection mode: simple (the mode this detector implements), minhash, toxic",
    "tokenizer": "word (fast, whitespace words), p50k or cl100k (tiktoken BPE)",
    "content_key": "dotted path to the text inside each JSON line, e.g. text or meta.body",
    "max_keyless_fraction": "a file fails (no outputs, never clean) when more than this "
    "fraction of its JSON lines has no string at content_key; one with none always fails",
    "ngram_size": "question n-gram size in tokens",
    "sample_every_m_tokens": "sampling stride: on a miss, jump this many tokens",
    "question_max_consecutive_misses": "consecutive misses tolerated per eval item while "
    "expanding a cluster left and right",
    "contamination_score_threshold": "combined score at or above which a match is reported",
    "perfect_match_decay_start": "total eval length (tokens) at or below which a perfect "
    "match is required (-1 = off)",
    "perfect_match_decay_end": "total eval length (tokens) from which the plain threshold "
    "applies; linear in between (-1 = off)",
    "short_answer_token_threshold": "answers with at most this many tokens are matched "
    "exactly as a sequence",
    "short_answer_window_length": "tokens after the question searched for a short answer",
    "min_long_answer_window": "minimum tokens after the question searched for a long answer "
    "(window = max(2 x answer length, this))",
    "answer_ngram_size": "n-gram size for long answers",
    "min_passage_distance": "minimum tokens before the question searched for the passage "
    "(window = max(2 x passage length, this))",
    "passage_max_consecutive_misses": "misses tolerated while walking back through a passage",
    "passage_ngram_size": "n-gram size for passages",
    "eval_min_token_length": "skip eval records with fewer tokens (P+Q+A), 0 = off",
    "eval_min_unique_word_count": "skip eval records with fewer unique words; 0 = off",
    "eval_dedup": "skip eval records repeating an (eval_key, fingerprint) pair",
    "index_answers": "index and score answers",
    "index_passages": "index and score passages",
    "hot_ngram_min_docs": "an n-gram in more eval questions than max(this, 2 x sqrt(records)) "
    "is hot: never starts a cluster",
    "punctuation_chars": "characters replaced by a space during normalisation",
    "min_training_tokens": "skip training lines with fewer tokens; -1 = 2 x ngram_size (Decon)",
    "prefilter": "skip documents that share no word run with any seeding eval n-gram before "
    "tokenizing (lossless: they cannot match)",
    "purify": "write purified copies (contaminated lines removed) to the cleaned directory",
    "workers": "worker processes; 0 = all cores",
    "chunk_lines": "lines per work unit when a large file is split across workers",
    "compat": "decon: Decon's simple-mode decisions only (reports comparable with Decon's); "
    "none: also the word-alignment rules (question-only leaks, short items, answers before, "
    "after or inside the question, a probe at every position)",
    "question_only_min_words": "compat none: an aligned question of at least this many words "
    "(and 3 content words) is reported without answer evidence",
    "min_content_words": "compat none: an aligned question must contain at least this many of "
    "the item's content (non-function) words (one suffices when its answer is near)",
    "word_edit_rate": "compat none: word edits (substitutions, insertions, deletions) tolerated "
    "per question word when aligning (rounded; at least 1 from 4 words)",
    "max_word_edits": "compat none: at most this many word edits per aligned question",
    "answer_window_words": "compat none: words before and after an aligned question searched "
    "for its answer (and inside it, for fill-in-the-blank items)",
    "short_sentence_rule": "compat none: report a question shorter than "
    "question_only_min_words that the document holds as a unit of its own (a line, a list "
    "entry, a quoted string)",
    "question_only_min_evidence": "compat none: evidence a question found without its answer "
    "or passage must show: the specificity of its words found, summed (a word in one question "
    "of the eval counts 1, a word in every question 0)",
    "short_unit_min_evidence": "compat none: evidence a short question reported as a unit of "
    "its own must show (same measure)",
}


@dataclass
class DetectOptions:
    """Options of `decon detect` and of the `detect` section of the job file."""

    mode: str = "simple"  # simple | minhash | toxic
    tokenizer: str = "word"  # word | p50k | cl100k
    content_key: str = "text"  # dotted path into each JSON line
    max_keyless_fraction: float = 0.5
    ngram_size: int = 5
    sample_every_m_tokens: int = 10
    question_max_consecutive_misses: int = 11
    contamination_score_threshold: float = 0.8
    perfect_match_decay_start: int = 20
    perfect_match_decay_end: int = 50
    short_answer_token_threshold: int = 3
    short_answer_window_length: int = 50
    min_long_answer_window: int = 100
    answer_ngram_size: int = 3
    min_passage_distance: int = 100
    passage_max_consecutive_misses: int = 2
    passage_ngram_size: int = 4
    eval_min_token_length: int = 20
    eval_min_unique_word_count: int = 4
    eval_dedup: bool = True
    index_answers: bool = True
    index_passages: bool = True
    hot_ngram_min_docs: int = 2000
    punctuation_chars: str = DEFAULT_PUNCTUATION_CHARS
    min_training_tokens: int = -1
    prefilter: bool = True
    purify: bool = False
    workers: int = 0  # 0 = all cores
    chunk_lines: int = 20000
    compat: str = "none"  # decon | none
    question_only_min_words: int = 8
    min_content_words: int = 2
    word_edit_rate: float = 0.1
    max_word_edits: int = 4
    answer_window_words: int = 30
    short_sentence_rule: bool = True
    question_only_min_evidence: float = 3.0
    short_unit_min_evidence: float = 1.5
    # -- minhash and toxic modes --
    minhash_shingle_size: int = 2
    minhash_num_perm: int = 128
    minhash_seed: int = 1
    minhash_threshold: float = 0.5
    minhash_lsh_threshold: float = 0.3
    minhash_metric: str = "jaccard"  # jaccard | containment
    toxic_vectors: str = ""  # fastText .vec file: local path or s3:// URI
    toxic_max_words: int = 500_000  # 0 = every word of the file
    toxic_ngram_size: int = 2
    toxic_hyperplanes: int = 0  # 0 = auto (from the reference size)
    toxic_tables: int = 16
    toxic_min_tables: int = 2
    toxic_seed: int = 1
    toxic_threshold: float = 0.5
    toxic_poison_scale: float = 1.0
    toxic_skip_stopwords: bool = True

    @property
    def extended(self) -> bool:
        """True when the rules beyond Decon's simple mode are on (compat != decon)."""
        return self.compat != "decon"

    @property
    def minimum_question_idf_threshold(self) -> float:
        """Lowest question overlap that can still reach the threshold (perfect A and P)."""
        return max(0.0, (self.contamination_score_threshold - 0.3) / 0.7)

    @property
    def training_min_tokens(self) -> int:
        """Training lines shorter than this are not scanned."""
        if self.min_training_tokens < 0:
            return 2 * self.ngram_size
        return self.min_training_tokens

    @classmethod
    def names(cls) -> list[str]:
        """Every option name, in declaration order."""
        return [f.name for f in fields(cls)]

    def validate(self) -> list[str]:
        """Return problems as 'key: message' strings (empty when valid)."""
        problems = []
        if self.mode not in ("simple", "minhash", "toxic"):
            problems.append(f"mode: must be simple, minhash or toxic, not {self.mode!r}")
        if self.tokenizer not in ("word", "p50k", "cl100k"):
            problems.append(f"tokenizer: must be word, p50k or cl100k, not {self.tokenizer!r}")
        if self.compat not in ("decon", "none"):
            problems.append(f"compat: must be decon or none, not {self.compat!r}")
        if not 0.0 <= self.word_edit_rate <= 0.5:
            problems.append("word_edit_rate: must be in [0, 0.5]")
        if not 0.0 <= self.max_keyless_fraction <= 1.0:
            problems.append("max_keyless_fraction: must be in [0, 1]")
        if not self.content_key or any(not part for part in self.content_key.split(".")):
            problems.append(f"content_key: must be a dotted path, not {self.content_key!r}")
        for name in (
            "ngram_size",
            "sample_every_m_tokens",
            "question_max_consecutive_misses",
            "answer_ngram_size",
            "passage_ngram_size",
            "chunk_lines",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1")
        for name in (
            "short_answer_token_threshold",
            "short_answer_window_length",
            "min_long_answer_window",
            "min_passage_distance",
            "passage_max_consecutive_misses",
            "eval_min_token_length",
            "eval_min_unique_word_count",
            "hot_ngram_min_docs",
            "workers",
            "question_only_min_words",
            "min_content_words",
            "max_word_edits",
            "answer_window_words",
            "question_only_min_evidence",
            "short_unit_min_evidence",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0")
        if not 0.0 < self.contamination_score_threshold <= 1.0:
            problems.append("contamination_score_threshold: must be in (0, 1]")
        start, end = self.perfect_match_decay_start, self.perfect_match_decay_end
        if start >= 0 and end >= 0 and end < start:
            problems.append(
                f"perfect_match_decay_end: must be >= perfect_match_decay_start ({start})"
            )
        problems += similarity_mode_problems(self)
        return problems


# -- minhash and toxic modes --------------------------------------------------------------------

OPTION_HELP.update(
    {
        "mode": "detection mode: simple (Decon n-gram clusters), minhash (near-duplicate "
        "windows, datasketch), toxic (word-vector n-gram LSH; needs toxic_vectors)",
        "minhash_shingle_size": "minhash: tokens per shingle (words or BPE tokens, per tokenizer)",
        "minhash_num_perm": "minhash: permutations per MinHash signature",
        "minhash_seed": "minhash: seed of the MinHash permutations",
        "minhash_threshold": "minhash: Jaccard similarity (or containment) of an eval question "
        "and a training window at or above which a match is reported",
        "minhash_lsh_threshold": "minhash: MinHashLSH threshold for candidate windows (below "
        "minhash_threshold: windows are longer than the questions they contain)",
        "minhash_metric": "minhash: jaccard (question vs window of its length) or containment "
        "(share of the question's shingles found in the window)",
        "toxic_vectors": "toxic: word vectors in fastText .vec text format (local path or "
        "s3:// URI), e.g. crawl-300d-2M.vec from fasttext.cc",
        "toxic_max_words": "toxic: read only the first N words of the vector file (fastText files "
        "are sorted by frequency; 0 = all)",
        "toxic_ngram_size": "toxic: words per n-gram (its vector is the sum of word vectors)",
        "toxic_hyperplanes": "toxic: random hyperplanes (sign bits) per LSH bucket; 0 = from the "
        "reference size (log2 of its n-grams + 1, at least 12)",
        "toxic_tables": "toxic: LSH tables (independent hyperplane sets)",
        "toxic_min_tables": "toxic: tables in which a training n-gram must share a question "
        "n-gram's bucket for that n-gram to count as found",
        "toxic_seed": "toxic: seed of the hyperplanes and of unknown words' poison vectors",
        "toxic_threshold": "toxic: share of an eval question's buckets found in a training "
        "window at or above which a match is reported",
        "toxic_poison_scale": "toxic: length of the random vector of an unknown word or number, "
        "in average word-vector lengths",
        "toxic_skip_stopwords": "toxic: drop common function words before forming n-grams",
    }
)


def similarity_mode_problems(options: DetectOptions) -> list[str]:
    """Problems with the minhash and toxic options, as 'key: message' strings."""
    problems = []
    for name in (
        "minhash_shingle_size",
        "minhash_num_perm",
        "toxic_ngram_size",
        "toxic_tables",
    ):
        if getattr(options, name) < 1:
            problems.append(f"{name}: must be >= 1")
    if not 1 <= options.toxic_min_tables <= options.toxic_tables:
        problems.append(
            f"toxic_min_tables: must be between 1 and toxic_tables ({options.toxic_tables})"
        )
    if not 0 <= options.toxic_hyperplanes <= 40:
        problems.append("toxic_hyperplanes: must be between 0 (auto) and 40")
    for name in ("minhash_seed", "toxic_seed", "toxic_max_words"):
        if getattr(options, name) < 0:
            problems.append(f"{name}: must be >= 0")
    for name in ("minhash_threshold", "minhash_lsh_threshold", "toxic_threshold"):
        if not 0.0 < getattr(options, name) <= 1.0:
            problems.append(f"{name}: must be in (0, 1]")
    if options.minhash_metric not in ("jaccard", "containment"):
        problems.append(
            f"minhash_metric: must be jaccard or containment, not {options.minhash_metric!r}"
        )
    if options.toxic_poison_scale <= 0:
        problems.append("toxic_poison_scale: must be > 0")
    if options.mode == "toxic" and not options.toxic_vectors:
        problems.append("toxic_vectors: required in toxic mode (a fastText .vec path or s3:// URI)")
    return problems
