"""Names of pytree leaves: a `jax.tree_util` key path as an 'a/b/c' string."""

from __future__ import annotations


def _key_name(key) -> str:
  for attr in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_string(path) -> str:
  """'/'-joined key path, e.g. ('attn', 'wq') -> 'attn/wq'; list indices become digits."""
  return "/".join(_key_name(k) for k in path)
