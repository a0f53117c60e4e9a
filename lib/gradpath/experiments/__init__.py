"""Chapter-only code: one module per chapter topic, used by the notebooks and nothing else.

These modules may import the core (:mod:`gradpath`) but never :mod:`gradpath.book`; the layers are
checked by import-linter (``make lint``, and ``tests/test_layers.py``).

- :mod:`~gradpath.experiments.chain`           chapter 1: derivatives along a chain of layers
- :mod:`~gradpath.experiments.symptoms`        chapter 2: frozen layers, plateaus, depth tables
- :mod:`~gradpath.experiments.explosion`       chapter 3: growth factors, layer gains, a bad run
- :mod:`~gradpath.experiments.recurrent`       chapters 3-4: an RNN with a chosen spectral radius
- :mod:`~gradpath.experiments.clipping`        chapter 4: clipping experiments
- :mod:`~gradpath.experiments.activation_flow` chapter 5: activation derivatives and weight growth
- :mod:`~gradpath.experiments.dead_units`      chapter 5: killing, counting and reviving dead ReLUs
- :mod:`~gradpath.experiments.variance`        chapter 6: forward/backward variance at init
- :mod:`~gradpath.experiments.saturation`      chapter 6: each layer's activations during training
- :mod:`~gradpath.experiments.normalization`   chapter 7: batch norm written out, landscape probes
- :mod:`~gradpath.experiments.residual`        chapter 8: residual and highway blocks, lesions
- :mod:`~gradpath.experiments.gated`           chapter 9: RNN, LSTM and GRU cells written out
- :mod:`~gradpath.experiments.transformers`    chapter 10: blocks written out, pre/post-LN, warm-up
- :mod:`~gradpath.experiments.mixed_precision` chapter 11: loss-scaled runs, checkpointing, ZeRO
- :mod:`~gradpath.experiments.capstone`        chapter 12: optimizers written out, the recipe ladder
- :mod:`~gradpath.experiments.history`         history page: forward- against reverse-mode cost
"""
