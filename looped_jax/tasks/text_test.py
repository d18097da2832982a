"""Tokenizers, the packed `text_corpus` dataset and the `text_lm` task, on a corpus written
to a tmp folder (and the default pydoc corpus), built into tmp folders."""

import math
import os
import sys

import jax
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks import text

WORDS = ("loop", "weight", "tied", "layer", "depth", "token", "attention", "the", "a", "of",
         "résumé", "naïve", "größe", "日本", "🙂", "recurrent", "model", "learns", "sums")


def _doc(rng, words):
  return " ".join(rng.choice(WORDS, size=words)) + ".\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """10 documents of varied length, one in a subfolder, plus a file that is not .txt."""
  folder = tmp_path_factory.mktemp("corpus")
  rng = np.random.default_rng(0)
  (folder / "sub").mkdir()
  for i in range(10):
    path = folder / ("sub" if i == 7 else "") / f"doc{i:02d}.txt"
    path.write_text(_doc(rng, 40 + 30 * i), encoding="utf-8")
  (folder / "notes.md").write_text("not a document", encoding="utf-8")
  return str(folder)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("build"))


def _documents(corpus):
  files = sorted((os.path.relpath(os.path.join(r, n), corpus) for r, _, ns in os.walk(corpus)
                  for n in ns if n.endswith(".txt")))
  out = []
  for rel in files:
    with open(os.path.join(corpus, rel), encoding="utf-8") as f:
      out.append(f.read())
  return out


def test_byte_tokenizer_round_trips_unicode():
  tok = text.ByteTokenizer()
  s = "héllo wörld — 日本語 🙂\n"
  ids = tok.encode(s)
  assert len(ids) == len(s.encode("utf-8")) and max(ids) < 256
  assert tok.decode(ids) == s
  assert (tok.vocab_size, tok.eos_id) == (257, 256)
  assert tok.decode([104, 256, 105]) == "hi"  # EOS is dropped
  assert tok.decode([0xE6, 0x97]) == "\ufffd"  # a cut multi-byte character is replaced


def test_split_documents():
  docs = [f"d{i}" * (1 + 7 * (i % 3)) for i in range(20)]
  splits = text.split_documents(docs, 0.2)
  assert splits["train"] and splits["test"]
  assert len(splits["train"]) + len(splits["test"]) == 20
  assert set(splits["train"]).isdisjoint(splits["test"])
  share = sum(map(len, splits["test"])) / sum(map(len, docs))
  assert abs(share - 0.2) < 0.05
  # A few equal documents: none qualifies, the last is held out.
  assert text.split_documents(["ab"] * 5, 0.1)["test"] == ["ab"]
  # Under 5 documents: the tail of each.
  few = text.split_documents(["0123456789", "abcdefghij"], 0.3)
  assert few == {"train": ["0123456", "abcdefg"], "test": ["789", "hij"]}


def test_packed_rows_match_the_split_streams(corpus, build_dir):
  tok = text.ByteTokenizer()
  n = 16
  task = text.TextLM(data_dir=corpus, length=n, build_dir=build_dir)
  splits = text.split_documents(_documents(corpus), task.held_out_fraction)
  assert splits["train"] and splits["test"]
  assert set(splits["train"]).isdisjoint(splits["test"])
  for split, t in (("train", task), ("test", task.held_out())):
    stream = []
    for doc in splits[split]:
      stream += tok.encode(doc) + [tok.eos_id]
    rows = t.pool
    assert rows.ndim == 2 and rows.shape[1] == n + 1
    assert len(rows) == len(stream) // (n + 1) > 0
    np.testing.assert_array_equal(rows.reshape(-1), stream[:rows.size])
  assert (task.seq_len, task.vocab_size, task.output_dim) == (n, 257, 257)


def test_sample_is_deterministic_jittable_and_shifted(corpus, build_dir):
  task = text.TextLM(data_dir=corpus, length=16, build_dir=build_dir)
  sample = jax.jit(task.sample, static_argnums=1)
  a = jax.device_get(sample(jax.random.key(1), 32))
  b = jax.device_get(sample(jax.random.key(1), 32))
  c = jax.device_get(sample(jax.random.key(2), 32))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["inputs"], c["inputs"])
  assert a["inputs"].shape == a["targets"].shape == a["weights"].shape == (32, 16)
  assert a["inputs"].dtype == a["targets"].dtype == np.int32
  assert a["weights"].dtype == np.float32 and np.all(a["weights"] == 1)
  np.testing.assert_array_equal(a["inputs"][:, 1:], a["targets"][:, :-1])
  # Every example is a window of the split's stream, at any offset.
  flat = task.pool.reshape(-1).astype(np.int32)
  windows = np.lib.stride_tricks.sliding_window_view(flat, 17)
  starts = []
  for x, y in zip(a["inputs"], a["targets"]):
    hit = np.flatnonzero(np.all(windows == np.concatenate([x, y[-1:]]), axis=1))
    assert hit.size
    starts.append(hit[0])
  assert any(s % 17 for s in starts)
  # Metrics: TokenTask's plus bits per token.
  logits = jax.random.normal(jax.random.key(3), (32, 16, 257))
  m = task.metrics(logits, a)
  np.testing.assert_allclose(m["bits_per_token"][0], m["loss"][0] / math.log(2), rtol=1e-6)
  np.testing.assert_allclose(task.loss(logits, a), m["loss"][0] / m["loss"][1], rtol=1e-5)


def test_bpe_trains_round_trips_and_is_reused(corpus, build_dir):
  task = tasks.get({"name": "text_lm", "data_dir": corpus, "build_dir": build_dir,
                    "tokenizer": "bpe", "bpe_vocab_size": 320, "length": 8})
  assert task.vocab_size == task.output_dim == 320
  tok = text.tokenizer_for(task)
  assert tok.vocab_size == 320 and tok.eos_id == 0
  s = "the naïve recurrent model learns 日本 sums 🙂"
  ids = tok.encode(s)
  assert tok.decode(ids) == s and len(ids) < len(s.encode("utf-8"))  # merges are used
  splits = text.split_documents(_documents(corpus), task.held_out_fraction)
  for split, t in (("train", task), ("test", task.held_out())):
    stream = tok.encode_documents(splits[split])
    np.testing.assert_array_equal(t.pool.reshape(-1), stream[:t.pool.size])
    assert t.pool.max() < 320
  pool = task.pool
  # A second load (a new process: caches cleared) reads the saved tokenizer.json.
  path = next(os.path.join(r, "tokenizer.json") for r, _, ns in os.walk(build_dir)
              if "tokenizer.json" in ns)
  mtime = os.stat(path).st_mtime_ns
  text._bpe.cache_clear()  # pylint: disable=protected-access
  text._pool.cache_clear()  # pylint: disable=protected-access
  again = text.tokenizer_for(task)
  assert again is not tok and again.encode(s) == ids
  np.testing.assert_array_equal(task.pool, pool)
  assert os.stat(path).st_mtime_ns == mtime


def test_bpe_without_tokenizers_package(monkeypatch):
  monkeypatch.setitem(sys.modules, "tokenizers", None)  # import raises ImportError
  with pytest.raises(ConfigError, match=r'pip install "looped_jax\[bpe\]"'):
    text.BpeTokenizer.train(["some text"], 300)


def test_bad_inputs(tmp_path, corpus, build_dir):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ConfigError, match="no .txt files"):
    text.TextLM(data_dir=str(empty))
  (empty / "readme.md").write_text("x")
  with pytest.raises(ConfigError, match="no .txt files"):
    text.TextLM(data_dir=str(empty))
  with pytest.raises(ConfigError, match="is not a folder"):
    text.TextLM(data_dir=str(tmp_path / "missing"))
  with pytest.raises(ConfigError, match="'byte', 'bpe'"):
    tasks.get({"name": "text_lm", "tokenizer": "wordpiece"})
  with pytest.raises(ConfigError, match=">= 300"):
    text.TextLM(tokenizer="bpe", bpe_vocab_size=100)
  with pytest.raises(ConfigError, match="only for"):
    text.TextLM(bpe_vocab_size=512)
  with pytest.raises(ConfigError, match="held_out_fraction"):
    text.TextLM(held_out_fraction=0.0)
  with pytest.raises(ConfigError, match="'train', 'test'"):
    text.TextLM(split="valid")
  with pytest.raises(ConfigError, match="too long for the test split"):
    _ = text.TextLM(data_dir=corpus, length=5000, build_dir=build_dir).pool
  bad = tmp_path / "latin1"
  bad.mkdir()
  (bad / "a.txt").write_bytes("café".encode("latin-1"))
  with pytest.raises(ConfigError, match="not UTF-8"):
    _ = text.TextLM(data_dir=str(bad), length=2, build_dir=build_dir).pool


def test_registry(corpus, tmp_path):
  task = tasks.get({"name": "text_lm", "data_dir": corpus, "build_dir": str(tmp_path)})
  assert isinstance(task, text.TextLM) and task.seq_len == 128
  assert task.held_out().split == "test"
  cfg = tasks.default_config("text_lm")
  assert cfg == {"name": "text_lm", "data_dir": "", "tokenizer": "byte", "bpe_vocab_size": 0,
                 "length": 128, "held_out_fraction": 0.1, "split": "train", "build_dir": ""}


def test_default_corpus(tmp_path):
  task = text.TextLM(build_dir=str(tmp_path))
  assert len(task.pool) > 1000 and len(task.held_out().pool) > 100
  sample = jax.device_get(jax.jit(task.sample, static_argnums=1)(jax.random.key(0), 4))
  assert len(text.tokenizer_for(task).decode(sample["inputs"][0])) > 64
  assert "tensorflow" not in sys.modules
