"""Everything that makes checkpoints: corpus, tokenizer, model, training loop, run format.

::

    model/          the model: start at model/gpt.py (see model/__init__.py for the rest)
    config          TrainConfig (ModelConfig is model/config.py)
    corpus          built-in and user corpora;  tokenizer  whitespace words to ids
    loss, products  cross-entropy and matrix products with CPU-friendly gradients
    steps           the compiled steps between two checkpoints (AdamW, data parallel)
    schedule        which steps are saved
    train           the run loop: train() from a corpus to a folder of checkpoints
    prepare         every refusal before anything is written; the run's metadata
    resume          a new run folder, or the newest whole step of an existing one
    run_writer      a metrics record and a checkpoint per scheduled step
    checkpoint      the run folder's format (run.json, steps/, the optimizer window)
    metrics_log     metrics.jsonl;  atomic  files written whole, with the umask's mode
    cli, runtime    interp-train;  XLA's CPU flags, set by entry points

Importing it has no side effects; entry points call ``training.runtime.configure()`` to
set XLA's CPU flags before JAX starts its backend.
"""
