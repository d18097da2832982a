"""looped_jax.analysis."""
