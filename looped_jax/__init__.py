"""looped_jax: looped (weight-tied, recurrent-depth) transformers in JAX/Flax."""

__version__ = "0.1.0"
