"""gradpath: measure how gradients flow through any PyTorch model (the library of Gradient Flow).

Three layers, each allowed to import only the ones below it (checked by import-linter):

**The core** (this package's own modules; public API, needs only torch, numpy and matplotlib):

- :mod:`gradpath.device`      where experiments run (cuda > mps > cpu), seeding for reproducibility
- :mod:`gradpath.scale`       one preset that sizes every experiment (small on CPU, larger on GPU)
- :mod:`gradpath.data`        synthetic tasks and scikit-learn's bundled digits
- :mod:`gradpath.activations` the activation registry and derivatives computed with autograd
- :mod:`gradpath.init`        weight-initialization schemes (Glorot/Xavier, He/Kaiming, ...), LSUV
- :mod:`gradpath.models`      the deep MLP factory (activation, init, normalization, residuals)
- :mod:`gradpath.numerics`    norms, means and variances right for every finite input (no overflow)
- :mod:`gradpath.probes`      per-layer gradient norms, backward signals, activation statistics
- :mod:`gradpath.diagnosis`   rules that turn per-layer norms into a verdict
- :mod:`gradpath.doctor`      the gradient doctor: findings, causes and fixes for any model
- :mod:`gradpath.training`    a small training loop that records gradient norms and survives NaN
- :mod:`gradpath.sweeps`      the same probe over depths, seeds and settings
- :mod:`gradpath.through_time` the gradient through time of any RNN, LSTM, GRU or custom cell
- :mod:`gradpath.precision`   number formats, gradient underflow in low precision, loss scaling
- :mod:`gradpath.plots`       the course's plotting style for gradient-flow figures
- :mod:`gradpath.progress`    optional progress bars (tqdm), silent in the static book

**Chapter experiments** (:mod:`gradpath.experiments`): one module per chapter topic.

**Book plumbing** (:mod:`gradpath.book`): the Sphinx extension, quizzes, kernel-free figures,
live explorers and the benchmark. The chapters' extras: ``pip install 'gradpath[book]'``.
"""

__version__ = "0.1.0"
