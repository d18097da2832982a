"""looped_jax.models."""
