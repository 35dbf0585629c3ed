"""Everything that makes checkpoints: corpus, tokenizer, model, training loop, run format.

Importing it has no side effects; entry points call ``training.runtime.configure()`` to
set XLA's CPU flags before JAX starts its backend.
"""
