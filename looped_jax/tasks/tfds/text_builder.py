"""TFDS builder `text_corpus`: a text corpus tokenized and packed into fixed-length rows.

  documents (text.load_documents: *.txt files from the manual dir, or the pydoc topics)
    -> text.split_documents -> train / test documents
    -> tokenizer: bytes, or a BPE trained on the train documents (saved as tokenizer.json
       in the dataset folder, next to the array_record files)
    -> per split: ids of each document + EOS, concatenated, cut by text.pack into
       consecutive rows of seq_len + 1 tokens (the last partial row dropped)
    -> array_record, one example {"tokens": int32 [seq_len + 1]} per row, in stream order.

A config holds everything that changes the data, including a digest of the corpus, and is
named after it (`text_corpus_config`), so a changed file or setting builds a new dataset
beside the old ones. Read it with reader.text_source.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from looped_jax.errors import ConfigError, check, check_choice
from looped_jax.tasks import text
from looped_jax.tasks.tfds.builders import _ArrayRecordBuilder

CORPORA = ("files", text.PYDOC_CORPUS)


@dataclasses.dataclass(eq=False)
class TextCorpusConfig(tfds.core.BuilderConfig):
  """corpus: "files" (the *.txt files of the manual dir) or "pydoc_topics".
  corpus_digest: text.corpus_digest of the corpus, checked at build.
  tokenizer: "byte" | "bpe"; vocab_size: the BPE vocabulary (ignored for bytes).
  seq_len: rows hold seq_len + 1 tokens (inputs and next-token targets of n positions).
  held_out_fraction: see text.split_documents.
  """

  corpus: str = text.PYDOC_CORPUS
  corpus_digest: str = ""
  tokenizer: str = "byte"
  vocab_size: int = 0
  seq_len: int = 128
  held_out_fraction: float = 0.1

  def __post_init__(self):
    check_choice("corpus", self.corpus, CORPORA)
    check_choice("tokenizer", self.tokenizer, text.TOKENIZERS)
    check(self.seq_len >= 1, f"seq_len={self.seq_len} must be >= 1.")
    check(0 < self.held_out_fraction <= 0.5,
          f"held_out_fraction={self.held_out_fraction} must be in (0, 0.5].")
    if self.tokenizer == "bpe":
      check(self.vocab_size >= text.MIN_BPE_VOCAB,
            f"vocab_size={self.vocab_size} must be >= {text.MIN_BPE_VOCAB} for BPE.")


def text_corpus_config(data_dir: str, *, tokenizer: str = "byte", vocab_size: int = 0,
                       seq_len: int = 128, held_out_fraction: float = 0.1) -> TextCorpusConfig:
  """The config for the corpus in `data_dir` ("" = pydoc topics), named after its digest
  and settings, e.g. "pydoc_topics-1a2b3c4d5e6f-byte-n128-held0p1". BPE vocab_size 0 = 1024."""
  if tokenizer == "bpe":
    vocab_size = vocab_size or text.DEFAULT_BPE_VOCAB
  else:
    vocab_size = 0
  corpus = "files" if data_dir else text.PYDOC_CORPUS
  digest = text.corpus_digest(data_dir)
  tok = f"bpe{vocab_size}" if tokenizer == "bpe" else tokenizer
  held = f"{held_out_fraction:g}".replace(".", "p").replace("-", "m")
  name = f"{corpus.replace('_', '')}-{digest}-{tok}-n{seq_len}-held{held}"
  return TextCorpusConfig(name=name, corpus=corpus, corpus_digest=digest, tokenizer=tokenizer,
                          vocab_size=vocab_size, seq_len=seq_len,
                          held_out_fraction=held_out_fraction)


class TextCorpus(_ArrayRecordBuilder):
  """Packed token rows of a text corpus; splits "train" and "test" (disjoint documents).

  Features per example: tokens int32 [seq_len + 1]. Metadata: the config's settings plus,
  per split, the number of documents and of tokens in the stream before packing.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put UTF-8 .txt files (one document each, in any subfolders) in the manual dir and "
      "pass it as DownloadConfig(manual_dir=...) (reader.text_source does); the "
      "pydoc_topics corpus needs no files.")

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{cfg.corpus} text, {cfg.tokenizer} tokens, packed in rows of "
                    f"{cfg.seq_len + 1}.",
        features=tfds.features.FeaturesDict({
            "tokens": tfds.features.Tensor(shape=(cfg.seq_len + 1,), dtype=np.int32)}),
        disable_shuffling=True,  # rows stay in stream order
        metadata=tfds.core.MetadataDict(
            corpus=cfg.corpus, corpus_digest=cfg.corpus_digest, tokenizer=cfg.tokenizer,
            vocab_size=cfg.vocab_size, seq_len=cfg.seq_len,
            held_out_fraction=cfg.held_out_fraction))

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    folder = ""
    if cfg.corpus == "files":
      folder = str(dl_manager.manual_dir)
    if text.corpus_digest(folder) != cfg.corpus_digest:
      raise ConfigError(f"the corpus {folder or cfg.corpus} is not the one config "
                        f"{cfg.name} was made for; make the config with "
                        "text_corpus_config(that folder).")
    splits = text.split_documents(text.load_documents(folder), cfg.held_out_fraction)
    if cfg.tokenizer == "bpe":
      tok = text.BpeTokenizer.train(splits["train"], cfg.vocab_size)
      # self.data_path is the folder being built; TFDS renames it into place when done.
      self.data_path.mkdir(parents=True, exist_ok=True)
      tok.save(self.data_path / "tokenizer.json")
    else:
      tok = text.ByteTokenizer()
    rows = {}
    for split, docs in splits.items():
      stream = tok.encode_documents(docs)
      rows[split] = text.pack(stream, cfg.seq_len)
      self.info.metadata[f"{split}_documents"] = len(docs)
      self.info.metadata[f"{split}_tokens"] = len(stream)
      if not len(rows[split]):
        raise ConfigError(
            f"task.length={cfg.seq_len} is too long for the {split} split of "
            f"{folder or cfg.corpus}: it has {len(stream)} tokens (EOS included), fewer "
            f"than one row of length + 1; use length <= {len(stream) - 1} or more text.")
    return {split: self._generate_examples(r) for split, r in rows.items()}

  def _generate_examples(self, rows: np.ndarray):
    for i, row in enumerate(rows):
      yield i, {"tokens": row}
