"""Text for looped language models: byte and BPE tokenizers, a packed corpus, the `text_lm` task.

Data flow:

  *.txt files (or the default corpus) -> documents -> train / test documents
    -> tokenizer (bytes; or a byte-level BPE trained on the train documents only)
    -> per split: token ids of each document + EOS, concatenated into one stream
    -> consecutive chunks of length + 1 (the last partial chunk dropped)
    -> TFDS `text_corpus` dataset, array_record, built once into `build_dir`
       (looped_jax/tasks/tfds/text_builder.py; read by reader.text_source)
    -> the split's rows, read once per process into a pool [N, length + 1]
    -> `TextLM.sample`: windows of length + 1 at random offsets of the pool's stream.

Corpus: `data_dir` is a folder of *.txt files (found recursively, in sorted path order, read
as UTF-8), one document per file. The default (data_dir = "") is the pydoc topic texts that
ship with Python itself (`pydoc_data.topics.topics`: ~80 documents, ~465k characters of
English prose and code from the Python reference, one document per key in sorted key
order): every Python install has it, so the task works offline with nothing downloaded.
Its text differs slightly between Python versions; the dataset name holds a digest of it.

Split (`split_documents`), deterministic: with 5 or more documents, whole documents are held
out for "test" (the rest are "train"): walking them in order, document i is held out when
that keeps the held-out share of the characters so far closest to held_out_fraction, i.e.
when held + len_i / 2 < held_out_fraction * (characters of documents 0..i), held = the
characters held out before i. The test share of the text thus stays near the fraction even
when document sizes vary a lot (the pydoc topics run from ~100 to 60k characters; holding
out every 10th document would keep ~4%; this rule holds out 33 of the 79, mostly small
ones, 10% of the text). Should no document qualify (a few equal ones), the last is held
out. With fewer than 5 documents, each document is cut instead: its last
round(held_out_fraction * len) characters are test, the rest train (each piece ends with EOS).

Tokenizers share `encode(str) -> list[int]`, `decode(list[int]) -> str` (invalid UTF-8 is
replaced with U+FFFD; EOS and ids outside the vocabulary are dropped), `vocab_size` and
`eos_id`:
  ByteTokenizer  ids 0..255 = UTF-8 bytes, 256 = end of document; vocab 257.
  BpeTokenizer   a byte-level BPE of the HuggingFace `tokenizers` library (pip install
                 "looped_jax[bpe]"), EOS = "<eos>" = id 0; trained at build time and saved
                 as tokenizer.json in the built dataset's folder, so every later reader
                 (training, evaluation, generation) decodes with the same one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.errors import ConfigError, check, check_choice
from looped_jax.tasks import register
from looped_jax.tasks.base import TokenTask

TOKENIZERS = ("byte", "bpe")
SPLITS = ("train", "test")
DEFAULT_BPE_VOCAB = 1024
MIN_BPE_VOCAB = 300  # 256 byte symbols + EOS + some merges
MIN_DOCUMENTS = 5  # fewer documents: split inside each document instead of between them
PYDOC_CORPUS = "pydoc_topics"


def default_build_dir() -> str:
  """$XDG_CACHE_HOME/looped_jax/text, or ~/.cache/looped_jax/text."""
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "looped_jax", "text")


# --- tokenizers -------------------------------------------------------------------------


class Tokenizer(Protocol):
  vocab_size: int
  eos_id: int

  def encode(self, text: str) -> list[int]:
    ...

  def decode(self, ids) -> str:
    ...


class ByteTokenizer:
  """UTF-8 bytes as ids 0..255, EOS = 256."""

  vocab_size = 257
  eos_id = 256

  def encode(self, text: str) -> list[int]:
    return list(text.encode("utf-8"))

  def decode(self, ids) -> str:
    data = bytes(int(i) for i in np.asarray(ids, np.int64).reshape(-1) if 0 <= i < 256)
    return data.decode("utf-8", errors="replace")

  def encode_documents(self, docs: list[str]) -> np.ndarray:
    """[sum(len(utf-8 of doc) + 1)] int32: each document's bytes followed by EOS."""
    parts = []
    for doc in docs:
      parts += [np.frombuffer(doc.encode("utf-8"), np.uint8).astype(np.int32),
                np.array([self.eos_id], np.int32)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _tokenizers_lib():
  try:
    import tokenizers  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ConfigError('task.tokenizer="bpe" needs the tokenizers package; install it with '
                      'pip install "looped_jax[bpe]", or use tokenizer="byte".') from None
  return tokenizers


class BpeTokenizer:
  """A byte-level BPE (`tokenizers.Tokenizer`); EOS is the special token "<eos>"."""

  EOS = "<eos>"

  def __init__(self, tokenizer):
    self._tok = tokenizer
    self.vocab_size = tokenizer.get_vocab_size()
    self.eos_id = tokenizer.token_to_id(self.EOS)

  @classmethod
  def train(cls, docs: list[str], vocab_size: int) -> BpeTokenizer:
    """Trains on `docs`; the vocabulary may stay below `vocab_size` on a tiny corpus."""
    tk = _tokenizers_lib()
    # add_prefix_space=False: decode(encode(s)) == s, no space in front of each document.
    byte_level = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = byte_level
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[cls.EOS],
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
                                     show_progress=False)
    tok.train_from_iterator(docs, trainer)
    return cls(tok)

  @classmethod
  def load(cls, path: str) -> BpeTokenizer:
    return cls(_tokenizers_lib().Tokenizer.from_file(os.fspath(path)))

  def save(self, path: str) -> None:
    self._tok.save(os.fspath(path))

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text).ids

  def decode(self, ids) -> str:
    ids = [int(i) for i in np.asarray(ids, np.int64).reshape(-1)
           if 0 <= i < self.vocab_size and i != self.eos_id]
    return self._tok.decode(ids)

  def encode_documents(self, docs: list[str]) -> np.ndarray:
    """Each document's ids followed by EOS, concatenated: int32 [total]."""
    parts = []
    for enc in self._tok.encode_batch(docs):  # parallel in Rust
      parts += [np.asarray(enc.ids, np.int32), np.array([self.eos_id], np.int32)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


# --- corpus -----------------------------------------------------------------------------


def corpus_files(data_dir: str) -> list[str]:
  """The *.txt files under `data_dir`, recursively, sorted; ConfigError if there are none."""
  if not os.path.isdir(data_dir):
    raise ConfigError(f"task.data_dir={data_dir!r} is not a folder; give a folder of .txt "
                      'files, or "" for the default corpus (Python\'s pydoc topics).')
  files = []
  for root, dirs, names in os.walk(data_dir):
    dirs.sort()
    files += [os.path.join(root, n) for n in names if n.endswith(".txt")]
  if not files:
    raise ConfigError(f"task.data_dir={data_dir!r} holds no .txt files; give a folder of "
                      'UTF-8 .txt files (one document each), or "" for the default corpus.')
  return sorted(files, key=lambda p: os.path.relpath(p, data_dir))


def _pydoc_topics() -> dict[str, str]:
  from pydoc_data.topics import topics  # pylint: disable=import-outside-toplevel
  return topics


def load_documents(data_dir: str) -> list[str]:
  """The corpus documents: one per .txt file of `data_dir`, or the pydoc topics if ""."""
  if not data_dir:
    topics = _pydoc_topics()
    return [topics[k] for k in sorted(topics)]
  docs = []
  for path in corpus_files(data_dir):
    try:
      with open(path, encoding="utf-8") as f:
        docs.append(f.read())
    except UnicodeDecodeError as e:
      raise ConfigError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                        "convert it to UTF-8 or remove it from task.data_dir.") from None
  return docs


def corpus_digest(data_dir: str) -> str:
  """12 hex digits of sha256 over the corpus (relative paths and contents of the files);
  memoized per file size and modification time."""
  if not data_dir:
    h = hashlib.sha256()
    for doc in load_documents(""):
      h.update(doc.encode("utf-8") + b"\0")
    return h.hexdigest()[:12]
  root = os.path.abspath(data_dir)
  stats = []
  for path in corpus_files(root):
    st = os.stat(path)
    stats.append((root, os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
  return _files_digest(tuple(stats))


@functools.lru_cache(maxsize=16)
def _files_digest(stats: tuple[tuple[str, str, int, int], ...]) -> str:
  h = hashlib.sha256()
  for root, rel, _, _ in stats:
    with open(os.path.join(root, rel), "rb") as f:
      h.update(rel.encode("utf-8") + b"\0" + hashlib.file_digest(f, "sha256").digest())
  return h.hexdigest()[:12]


def held_out_documents(lengths: list[int], held_out_fraction: float) -> list[int]:
  """Indices of the test documents, given the documents' lengths (see the module docstring)."""
  test, held, seen = [], 0, 0
  for i, n in enumerate(lengths):
    seen += n
    if n > 0 and held + n / 2 < held_out_fraction * seen:
      test.append(i)
      held += n
  return test or [len(lengths) - 1]


def split_documents(docs: list[str], held_out_fraction: float) -> dict[str, list[str]]:
  """{"train": [...], "test": [...]} as described in the module docstring."""
  if len(docs) >= MIN_DOCUMENTS:
    test = set(held_out_documents([len(d) for d in docs], held_out_fraction))
    return {"train": [d for i, d in enumerate(docs) if i not in test],
            "test": [d for i, d in enumerate(docs) if i in test]}
  cuts = [len(d) - round(held_out_fraction * len(d)) for d in docs]
  return {"train": [d[:c] for d, c in zip(docs, cuts)],
          "test": [d[c:] for d, c in zip(docs, cuts)]}


def pack(stream: np.ndarray, length: int) -> np.ndarray:
  """Token stream [T] -> rows [T // (length + 1), length + 1], consecutive, non-overlapping."""
  rows = len(stream) // (length + 1)
  return np.asarray(stream[:rows * (length + 1)], np.int32).reshape(rows, length + 1)


# --- the task ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _pool(data_dir: str, digest: str, tokenizer: str, bpe_vocab_size: int, length: int,
          held_out_fraction: float, split: str, build_dir: str) -> np.ndarray:
  """Every packed row of one split, read-only: [N, length + 1], uint16 (int32 for a vocab
  above 2^16) so that the jit constant stays small. `digest` keys the cache only."""
  del digest
  # Imported here: the task registry imports this module and must not pull in TFDS.
  from looped_jax.tasks.tfds import reader  # pylint: disable=import-outside-toplevel
  source = reader.text_source(data_dir, split, build_dir, tokenizer=tokenizer,
                              vocab_size=bpe_vocab_size, seq_len=length,
                              held_out_fraction=held_out_fraction)
  n = len(source)
  rows = []
  for start in range(0, n, 4096):  # batched reads: one array_record call each
    rows += [r["tokens"] for r in source.__getitems__(list(range(start, min(n, start + 4096))))]
  vocab = DEFAULT_BPE_VOCAB if tokenizer == "bpe" and not bpe_vocab_size else bpe_vocab_size
  dtype = np.uint16 if max(vocab, ByteTokenizer.vocab_size) <= 1 << 16 else np.int32
  pool = np.stack(rows).astype(dtype)
  pool.flags.writeable = False
  return pool


@functools.lru_cache(maxsize=8)
def _bpe(data_dir: str, digest: str, bpe_vocab_size: int, length: int,
         held_out_fraction: float, build_dir: str) -> BpeTokenizer:
  """The tokenizer.json saved with the built dataset (building it if needed)."""
  del digest
  from looped_jax.tasks.tfds import reader  # pylint: disable=import-outside-toplevel
  builder = reader.text_builder_for(data_dir, build_dir, tokenizer="bpe",
                                vocab_size=bpe_vocab_size, seq_len=length,
                                held_out_fraction=held_out_fraction)
  return BpeTokenizer.load(os.fspath(builder.data_path / "tokenizer.json"))


@register("text_lm")
@dataclasses.dataclass(frozen=True)
class TextLM(TokenTask):
  """Next-token language modelling on a text corpus (see the module docstring).

  data_dir: folder of UTF-8 *.txt files, one document each; "" = Python's pydoc topics.
  tokenizer: "byte" (vocab 257) or "bpe" (vocab `bpe_vocab_size`, 0 = 1024, >= 300).
  length: tokens per example n.
  held_out_fraction: share of the text held out as the test split, in whole documents (of
    each document's text under 5 documents); `held_out()` samples from it.
  build_dir: where the TFDS dataset is built ("" = $XDG_CACHE_HOME or ~/.cache, then
    looped_jax/text); built on the first `sample`, reused by later runs.

  Construction does no I/O beyond listing data_dir. The first `sample` builds the dataset
  if needed (default corpus, 2 CPU cores: 0.2 s for bytes, 0.35 s for BPE-1024 with its
  training) and reads the split's rows into a pool, a jit constant (default corpus at
  n = 128: 3255 train / 358 test rows of bytes, 1114 / 122 of BPE-1024). Each example is a
  window of n + 1 tokens starting at a uniformly drawn position of the split's packed
  stream (documents joined by EOS), so every offset is seen, not only chunk starts:

  inputs  int32 [B, n]    tokens t..t+n-1
  targets int32 [B, n]    tokens t+1..t+n (next token)
  weights float32 [B, n]  ones
  Attention: causal.
  """

  data_dir: str = ""
  tokenizer: str = "byte"
  bpe_vocab_size: int = 0
  length: int = 128
  held_out_fraction: float = 0.1
  split: str = "train"
  build_dir: str = ""

  def __post_init__(self):
    check_choice("task.tokenizer", self.tokenizer, TOKENIZERS)
    check_choice("task.split", self.split, SPLITS)
    check(self.length >= 1, f"task.length={self.length} must be >= 1.")
    check(0 < self.held_out_fraction <= 0.5,
          f"task.held_out_fraction={self.held_out_fraction} must be in (0, 0.5].")
    if self.tokenizer == "bpe":
      check(self.bpe_vocab_size == 0 or self.bpe_vocab_size >= MIN_BPE_VOCAB,
            f"task.bpe_vocab_size={self.bpe_vocab_size} is too small; use 0 (= "
            f"{DEFAULT_BPE_VOCAB}) or a value >= {MIN_BPE_VOCAB} (256 bytes + EOS + merges).")
    else:
      check(self.bpe_vocab_size == 0, f"task.bpe_vocab_size={self.bpe_vocab_size} is only "
            'for tokenizer="bpe"; set it to 0 with tokenizer="byte" (vocab 257).')
    if self.data_dir:
      corpus_files(self.data_dir)  # a missing folder or no .txt files fails here, early

  def held_out(self) -> TextLM:
    return dataclasses.replace(self, split="test")

  @property
  def seq_len(self) -> int:
    return self.length

  @property
  def vocab_size(self) -> int:
    if self.tokenizer == "byte":
      return ByteTokenizer.vocab_size
    return self.bpe_vocab_size or DEFAULT_BPE_VOCAB

  @property
  def output_dim(self) -> int:
    return self.vocab_size

  def _key(self) -> tuple:
    data_dir = os.path.abspath(self.data_dir) if self.data_dir else ""
    return (data_dir, corpus_digest(data_dir), self.bpe_vocab_size, self.length,
            self.held_out_fraction, os.path.abspath(self.build_dir or default_build_dir()))

  @property
  def pool(self) -> np.ndarray:
    """The split's packed rows [N, n + 1] (uint16, or int32 above 2^16 ids), read-only."""
    data_dir, digest, vocab, length, fraction, build_dir = self._key()
    return _pool(data_dir, digest, self.tokenizer, vocab, length, fraction, self.split,
                 build_dir)

  def get_tokenizer(self) -> ByteTokenizer | BpeTokenizer:
    """The tokenizer of this task's data (BPE: the dataset's tokenizer.json; builds it)."""
    if self.tokenizer == "byte":
      return ByteTokenizer()
    return _bpe(*self._key())

  def sample(self, key, batch_size, step=0):
    del step
    n = self.length
    flat = jnp.asarray(self.pool).reshape(-1)  # the split's stream, whole chunks only
    start = jax.random.randint(key, (batch_size, 1), 0, flat.shape[0] - n)
    window = flat[start + jnp.arange(n + 1)].astype(jnp.int32)  # [B, n + 1]
    return {"inputs": window[:, :-1], "targets": window[:, 1:],
            "weights": jnp.ones((batch_size, n), jnp.float32)}

  def metrics(self, outputs, batch):
    out = super().metrics(outputs, batch)
    loss, weight = out["loss"]
    out["bits_per_token"] = (loss / math.log(2), weight)  # perplexity = 2 ** bits_per_token
    return out


def tokenizer_for(task: TextLM) -> ByteTokenizer | BpeTokenizer:
  """The tokenizer that encodes prompts and decodes outputs of `task` (--mode=generate)."""
  return task.get_tokenizer()
