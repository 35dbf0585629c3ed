"""Everything that makes checkpoints: corpus, tokenizer, model, training loop, run format."""

from training import runtime

runtime.configure()
