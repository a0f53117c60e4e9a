"""gradpath: the experiment library behind the Gradient Flow course.

Each module holds one idea of the course, and chapters import from it by name, e.g.
``from gradpath.probes import gradient_norms_by_layer``:

- :mod:`gradpath.device`      where experiments run, and seeding for reproducibility
- :mod:`gradpath.scale`       one preset that sizes every experiment (small on CPU, larger on GPU)
- :mod:`gradpath.activations` the activation registry and derivatives computed with autograd
- :mod:`gradpath.init`        weight-initialization schemes, named recipes and LSUV
- :mod:`gradpath.activation_flow` activation derivatives compared, and gradients as weights grow
- :mod:`gradpath.dead_units`  killing and counting dead ReLUs, and keeping units alive
- :mod:`gradpath.variance`    forward and backward variance layer by layer at initialization
- :mod:`gradpath.saturation`  each hidden layer's activations tracked during training
- :mod:`gradpath.models`      the deep MLP factory (activation, init, normalization, residuals)
- :mod:`gradpath.probes`      per-layer gradient norms, backward signals, activation statistics
- :mod:`gradpath.training`    a small training loop that records gradient norms and survives NaN
- :mod:`gradpath.symptoms`    measured symptoms of vanishing gradients (frozen layers, plateaus)
- :mod:`gradpath.explosion`   growth factors, layer gains, and spotting an exploding run
- :mod:`gradpath.recurrent`   an RNN with a chosen spectral radius, gradient through time, the cliff
- :mod:`gradpath.clipping`    gradient clipping by global norm and by value, written out
- :mod:`gradpath.normalization` batch norm written out, noisy batch norm, landscape probes
- :mod:`gradpath.residual`    residual and highway blocks, lesions, scale of very deep stacks
- :mod:`gradpath.data`        synthetic tasks and scikit-learn's bundled digits
- :mod:`gradpath.plots`       the course's plotting style for gradient-flow figures
- :mod:`gradpath.interactive` kernel-free interactive figures for the static site
- :mod:`gradpath.widgets`     live ipywidgets explorers for Jupyter, Colab and Binder
- :mod:`gradpath.quiz`        loading, checking and showing the chapter quizzes
- :mod:`gradpath.site`        how the book build and gradpath talk to each other
"""

__version__ = "0.1.0"
