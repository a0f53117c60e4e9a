"""Book plumbing: what turns the chapters into the course site. Nothing in the core needs it.

- :mod:`~gradpath.book.site`        the Sphinx extension
- :mod:`~gradpath.book.glue`        numbers from cells into the prose, and references as text
- :mod:`~gradpath.book.quiz`        loading, checking (as jupyterquiz grades) and showing quizzes
- :mod:`~gradpath.book.interactive` kernel-free interactive figures for the static site
- :mod:`~gradpath.book.widgets`     live ipywidgets explorers for Jupyter, Colab and Binder
- :mod:`~gradpath.book.bench`       ``make bench``: train()'s recording overhead, and the time and
  memory of each chapter
- :mod:`~gradpath.book.executed`    ``make test`` executes each chapter once (nbmake), and the book
  is built from those outputs
- :mod:`~gradpath.book.learning`    saved quiz progress, course-wide score, compute badges
- :mod:`~gradpath.book.cards`       flashcard decks (jupytercards) without a CDN
- :mod:`~gradpath.book.mathrender`  the prose's math typeset once at build time (MathJax in Node)
- :mod:`~gradpath.book.doctor_bench` ``make bench``: the gradient doctor's overhead
- :mod:`~gradpath.book.sitebench`   ``make site-bench``: page weight and Lighthouse scores
"""
