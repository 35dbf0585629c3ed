"""The induction lab: a built-in task on which a two-layer attention-only model forms an
induction head (Olsson et al. 2022), trained for several seeds in one compiled loop.

``data`` makes the sequences (a random prefix, then a segment and its repeat), ``config``
holds the task's defaults, ``loop`` trains the seeds together and writes one run per seed.
"""
