"""londi-jax: LONDI (Chen, Du and Mguni, arXiv 2402.12061) in JAX and Flax."""

__version__ = "0.1.0"
