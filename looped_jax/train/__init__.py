"""looped_jax.train."""
