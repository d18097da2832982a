"""One registry for tasks and baselines: registration, lookup, and the one-sentence miss."""

import pytest

from looped_jax.errors import ConfigError
from looped_jax.registry import Registry


def test_register_lookup_and_a_miss_names_the_closest_and_every_entry():
  things = Registry("thing")

  @things.register("linear")
  def linear():
    return 1

  things.register("lasso")(len)
  assert things.names() == ("lasso", "linear") and "linear" in things
  assert things.lookup("linear") is linear
  with pytest.raises(ConfigError, match=r"^thing 'linaer' is not a known thing \(did you mean "
                     r"'linear'\?\); choose one of lasso, linear\.$"):
    things.lookup("linaer")
  with pytest.raises(ConfigError, match=r"^task.name='x' is not a known thing; choose one of"):
    things.lookup("x", "task.name")
  with pytest.raises(ValueError, match="registered twice"):
    things.register("linear")(len)
