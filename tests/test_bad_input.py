"""Bad input gets a clear error or the right value, never a silent wrong one (issue 18).

Every case is a call of gradpath's public API with input a careless user could pass, and what it
must give: an error of a stated type whose message contains a fragment naming the argument, the
value and (where there are choices) the valid ones; or a result checked for being right. The
``kind`` in each id says which fault the case guards against:

- ``silent``: used to return a wrong or meaningless value without a word;
- ``obscure``: used to fail deep inside torch (or Python) with a message that names nothing of ours;
- ``type``: a bool, ``None``, float or string where an integer size, a number or a tensor belongs;
- ``finite``: ``inf``/``nan`` where a finite positive number belongs;
- ``empty``: an empty batch, data set or sequence;
- ``shape``: a shape or label that does not fit the model or the data;
- ``choice``: a name that is not one of the valid choices;
- ``valid``: the correct value that the checks must leave alone.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from gradpath import (
    activations,
    data,
    device,
    diagnosis,
    doctor,
    init,
    models,
    numerics,
    precision,
    probes,
    scale,
    sweeps,
    through_time,
    training,
)
from gradpath.book.quiz import QuizError, validate_quiz
from gradpath.experiments.gated import SequenceClassifier
from gradpath.experiments.recurrent import VanillaRNN
from torch import nn

NAN, INF = math.nan, math.inf


# ------------------------------------------------------------------------------------ helpers

def _mlp(**kwargs: Any) -> models.DeepMLP:
    options = {"width": 8, "depth": 3, "generator": torch.Generator().manual_seed(0)}
    options.update(kwargs)
    return models.DeepMLP(4, 3, **options)


def _x(n: int = 6, features: int = 4) -> torch.Tensor:
    return torch.randn(n, features, generator=torch.Generator().manual_seed(1))


def _classes(n: int = 8, features: int = 4, classes: int = 3) -> data.Dataset:
    return data.teacher_classification(samples=n, features=features, classes=classes)


def _regression(n: int = 8, features: int = 4) -> data.Dataset:
    return data.teacher_regression(samples=n, features=features)


def _empty_classes() -> data.Dataset:
    return data.Dataset(torch.empty(0, 4), torch.empty(0, dtype=torch.int64), "classification", 3)


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, y)


def _signal(loss_fn: Callable[..., Any], model: nn.Module | None = None,
            x: torch.Tensor | None = None) -> list[float]:
    model = _mlp() if model is None else model
    x = _x() if x is None else x
    return probes.backward_signal_norms(model, x, torch.zeros(len(x), dtype=torch.int64), loss_fn)


def _train(model: nn.Module | None = None, dataset: data.Dataset | None = None,
           **kwargs: Any) -> training.TrainingHistory:
    options: dict[str, Any] = {"steps": 2, "lr": 0.1}
    options.update(kwargs)
    return training.train(_mlp() if model is None else model,
                          _classes() if dataset is None else dataset, **options)


def _evaluate_keeps_mode() -> bool:
    model = _mlp(width=8)
    model.train()
    bad = data.Dataset(_x(6), torch.zeros(6, 1), "regression")   # 3 outputs, 1 target column
    with pytest.raises(ValueError):
        training.evaluate(model, bad)
    return model.training


def _question(kind: str = "multiple_choice", **changes: Any) -> dict[str, Any]:
    if kind == "numeric":
        q: dict[str, Any] = {
            "question": "What is 2 + 2?", "type": "numeric", "precision": 2, "expected": 4,
            "answers": [{"type": "value", "value": 4, "correct": True, "feedback": "Yes."},
                        {"type": "default", "feedback": "Add them."}]}
    else:
        q = {"question": "Which is even?", "type": "multiple_choice",
             "answers": [{"answer": "2", "correct": True, "feedback": "Yes."},
                         {"answer": "3", "correct": False, "feedback": "No, odd."}]}
    q.update(changes)
    return q


def _quiz(bad: dict[str, Any] | Any) -> None:
    """A valid quiz of 9 questions with ``bad`` as the last one (or ``bad`` itself if a list)."""
    good = [_question() for _ in range(4)] + [_question("numeric") for _ in range(4)]
    validate_quiz(good + [_question()], "ok")              # the base quiz is valid
    validate_quiz(bad if not isinstance(bad, dict) else good + [bad], "quiz")


def _answer(q: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    q = copy.deepcopy(q)
    answer = q["answers"][index]
    for key, value in changes.items():
        if value is _DELETE:
            answer.pop(key, None)
        else:
            answer[key] = value
    return q


_DELETE = object()


def _rnn_profile() -> through_time.TimeProfile:
    return through_time.jacobian_norms(nn.RNNCell(3, 4), torch.ones(2, 5, 3))


def _checkup_unconnected() -> Any:
    model = nn.Linear(2, 2)
    return doctor.checkup(model, torch.ones(3, 2), torch.zeros(3, 2),
                          lambda out, y: torch.tensor(1.0), steps=1)


# ------------------------------------------------------------------------------------ expectations

class Raises:
    def __init__(self, error: type[BaseException], fragment: str) -> None:
        self.error, self.fragment = error, fragment


class Gives:
    def __init__(self, check: Callable[[Any], bool], what: str) -> None:
        self.check, self.what = check, what


def raises(error: type[BaseException], fragment: str) -> Raises:
    """The call raises ``error`` with ``fragment`` (plain text, not a pattern) in its message."""
    return Raises(error, fragment)


def equals(expected: Any) -> Gives:
    return Gives(lambda got: got == expected, f"== {expected!r}")


def is_nan() -> Gives:
    return Gives(lambda got: isinstance(got, float) and math.isnan(got), "nan")


def all_nan() -> Gives:
    return Gives(lambda got: len(got) > 0 and all(math.isnan(v) for v in got), "all nan")


CASES: list[tuple[str, Callable[[], Any], Raises | Gives]] = [
    # --- diagnosis -------------------------------------------------------------------------
    ("silent-diagnose-zero-last-norm",
     lambda: diagnosis.diagnose_gradients([1e-3, 0.0]).verdict, equals("vanishing")),
    ("silent-diagnose-zero-middle-norm",
     lambda: diagnosis.diagnose_gradients([1e-3, 0.0, 1e-3]).verdict, equals("vanishing")),
    ("silent-diagnose-zero-reason",
     lambda: "exactly 0 at layer(s) 2" in " ".join(
         diagnosis.diagnose_gradients([1e-3, 0.0]).reasons), equals(True)),
    ("silent-diagnose-all-zero-ratio",
     lambda: diagnosis.diagnose_gradients([0.0, 0.0]).first_to_last_ratio, is_nan()),
    ("silent-diagnose-negative-norm",
     lambda: diagnosis.diagnose_gradients([-1.0, 1.0]),
     raises(ValueError, "norms[0] = -1.0")),
    ("silent-diagnose-string",
     lambda: diagnosis.diagnose_gradients("12"), raises(TypeError, "norms must be a sequence")),
    ("type-diagnose-string-entry",
     lambda: diagnosis.diagnose_gradients(["1", 2.0]),
     raises(TypeError, "norms[0] must be a real number, got '1'")),
    ("type-diagnose-matrix",
     lambda: diagnosis.diagnose_gradients(torch.ones(2, 2)),
     raises(TypeError, "norms[0] must be a real number")),
    ("empty-diagnose-one-norm",
     lambda: diagnosis.diagnose_gradients([1.0]), raises(ValueError, "at least two layers")),
    ("silent-diagnose-ratio-limit-zero",
     lambda: diagnosis.diagnose_gradients([1.0, 1.0], ratio_limit=0),
     raises(ValueError, "ratio_limit must be a finite positive number, got 0")),
    ("silent-diagnose-ratio-limit-below-one",
     lambda: diagnosis.diagnose_gradients([1.0, 1.0], ratio_limit=0.5),
     raises(ValueError, "ratio_limit must be a finite number > 1")),
    ("finite-diagnose-ratio-limit-inf",
     lambda: diagnosis.diagnose_gradients([1.0, 1.0], ratio_limit=INF),
     raises(ValueError, "ratio_limit must be a finite positive number, got inf")),
    ("finite-diagnose-vanishing-negative",
     lambda: diagnosis.diagnose_gradients([1.0, 1.0], vanishing_norm=-1),
     raises(ValueError, "vanishing_norm must be a finite positive number, got -1")),
    ("finite-diagnose-exploding-nan",
     lambda: diagnosis.diagnose_gradients([1.0, 1.0], exploding_norm=NAN),
     raises(ValueError, "exploding_norm must be a finite positive number, got nan")),
    ("silent-diagnose-thresholds-crossed",
     lambda: diagnosis.diagnose_gradients([1.0, 1.0], vanishing_norm=10, exploding_norm=1),
     raises(ValueError, "vanishing_norm (10) must be below exploding_norm (1)")),
    ("valid-diagnose-nan-is-exploding",
     lambda: diagnosis.diagnose_gradients([NAN, 1.0]).verdict, equals("exploding")),
    ("valid-diagnose-tensor",
     lambda: diagnosis.diagnose_gradients(torch.tensor([1.0, 1.0])).verdict, equals("healthy")),
    ("valid-diagnose-numpy",
     lambda: diagnosis.diagnose_gradients(np.array([1e-7, 1.0])).verdict, equals("vanishing")),

    # --- probes ----------------------------------------------------------------------------
    ("silent-signal-loss-not-connected",
     lambda: _signal(lambda out, y: torch.tensor(1.0, requires_grad=True)),
     raises(ValueError, "does not depend on any block's output")),
    ("obscure-signal-loss-needs-no-grad",
     lambda: _signal(lambda out, y: torch.tensor(1.0)),
     raises(ValueError, "does not depend on the model's output")),
    ("obscure-signal-loss-not-scalar",
     lambda: _signal(lambda out, y: out), raises(ValueError, "scalar loss tensor, got (6, 3)")),
    ("obscure-signal-wrong-features",
     lambda: _signal(_cross_entropy, x=_x(6, 5)),
     raises(ValueError, "DeepMLP was built for 4 input features")),
    ("empty-signal-batch",
     lambda: _signal(_cross_entropy, x=torch.empty(0, 4)), raises(ValueError, "empty batch")),
    ("obscure-signal-no-blocks",
     lambda: _signal(_cross_entropy, model=nn.Linear(4, 3)),
     raises(ValueError, "backward_signal_norms needs a model with a `blocks` list")),
    ("valid-signal-zero-loss-is-zero",
     lambda: _signal(lambda out, y: (out * 0).sum()), equals([0.0, 0.0])),
    ("obscure-stats-no-blocks-names-itself",
     lambda: probes.activation_statistics(nn.Linear(4, 3), _x()),
     raises(ValueError, "activation_statistics needs a model with a `blocks` list")),
    ("silent-stats-nan-input-dead",
     lambda: [s.dead_fraction
              for s in probes.activation_statistics(_mlp(), torch.full((4, 4), NAN))],
     all_nan()),
    ("silent-stats-nan-input-saturated",
     lambda: [s.saturated_fraction
              for s in probes.activation_statistics(_mlp(activation="sigmoid"),
                                                    torch.full((4, 4), NAN))],
     all_nan()),
    ("silent-stats-empty-batch",
     lambda: probes.activation_statistics(_mlp(), torch.empty(0, 4)),
     raises(ValueError, "activation_statistics: x is an empty batch (shape (0, 4))")),
    ("obscure-stats-wrong-features",
     lambda: probes.activation_statistics(_mlp(), _x(6, 7)),
     raises(ValueError, "got x of shape (6, 7)")),
    ("type-stats-x-list",
     lambda: probes.activation_statistics(_mlp(), [[0.0] * 4]),
     raises(TypeError, "x must be a torch.Tensor, got list")),
    ("silent-dead-fraction-empty-batch",
     lambda: probes.dead_fraction(torch.empty(0, 5)),
     raises(ValueError, "output has shape (0, 5)")),
    ("silent-dead-fraction-no-units",
     lambda: probes.dead_fraction(torch.empty(5, 0)),
     raises(ValueError, "output has shape (5, 0)")),
    ("silent-dead-fraction-nan", lambda: probes.dead_fraction(torch.full((3, 2), NAN)), is_nan()),
    ("valid-dead-fraction", lambda: probes.dead_fraction(torch.tensor([[0.0, 1.0], [0.0, 0.0]])),
     equals(0.5)),
    ("type-dead-fraction-list", lambda: probes.dead_fraction([[0.0]]),
     raises(TypeError, "output must be a torch.Tensor, got list")),
    ("silent-saturated-fraction-nan",
     lambda: probes.saturated_fraction("sigmoid", torch.tensor([NAN, 0.0])), is_nan()),
    ("valid-saturated-fraction-inf",
     lambda: probes.saturated_fraction("tanh", torch.tensor([INF, -INF])), equals(1.0)),
    ("empty-saturated-fraction",
     lambda: probes.saturated_fraction("sigmoid", torch.empty(0)),
     raises(ValueError, "pre_activation is empty")),
    ("choice-saturated-threshold",
     lambda: probes.saturated_fraction("sigmoid", torch.zeros(3), threshold=1.0),
     raises(ValueError, "threshold must be in the open interval (0, 1), got 1.0")),
    ("type-weight-layers-not-module",
     lambda: probes.weight_layers("model"),
     raises(TypeError, "model must be a torch.nn.Module, got str")),
    ("type-global-norm-not-module",
     lambda: probes.global_gradient_norm(None),
     raises(TypeError, "model must be a torch.nn.Module, got NoneType")),
    ("silent-first-nonfinite-string",
     lambda: probes.first_nonfinite("1nan"), raises(TypeError, "got the string '1nan'")),
    ("valid-first-nonfinite", lambda: probes.first_nonfinite([1.0, INF, NAN]), equals(1)),
    ("obscure-by-name-pattern-int",
     lambda: probes.gradient_norms_by_name(_mlp(), pattern=5),
     raises(TypeError, "pattern must be a regular expression (a string) or None, got 5")),
    ("obscure-group-norms-key-int",
     lambda: probes.group_norms({"a": 1.0}, 5), raises(TypeError, "key must be a regular")),
    ("silent-group-norms-negative",
     lambda: probes.group_norms({"a": -1.0}, "a"),
     raises(ValueError, "a norm cannot be negative: a = -1.0")),
    ("obscure-probe-by-name-loss-int",
     lambda: probes.probe_gradient_norms_by_name(_mlp(), 5),
     raises(TypeError, "loss_fn must be a function of no arguments")),
    ("choice-saturated-activation",
     lambda: probes.saturated_fraction("sigmoidd", torch.zeros(3)),
     raises(ValueError, "unknown activation 'sigmoidd'; valid choices are")),

    # --- initialization --------------------------------------------------------------------
    ("finite-mlp-init-scale-inf",
     lambda: _mlp(init="uniform", init_scale=INF),
     raises(ValueError, "scale must be a finite positive number, got inf")),
    ("finite-mlp-init-scale-nan",
     lambda: _mlp(init="normal", init_scale=NAN),
     raises(ValueError, "scale must be a finite positive number, got nan")),
    ("finite-initialize-gain-inf",
     lambda: init.initialize_(nn.Linear(3, 3), "xavier_normal", gain=INF),
     raises(ValueError, "gain must be a finite positive number, got inf")),
    ("finite-initialize-gain-nan",
     lambda: init.initialize_(nn.Linear(3, 3), "he_normal", gain=NAN),
     raises(ValueError, "gain must be a finite positive number, got nan")),
    ("type-initialize-gain-bool",
     lambda: init.initialize_(nn.Linear(3, 3), "he_normal", gain=True),
     raises(TypeError, "gain must be a real number, got True")),
    ("type-initialize-scale-string",
     lambda: init.initialize_(nn.Linear(3, 3), "normal", scale="0.1"),
     raises(TypeError, "scale must be a real number, got '0.1'")),
    ("choice-initialize-scale-missing",
     lambda: init.initialize_(nn.Linear(3, 3), "normal"),
     raises(ValueError, "initialization 'normal' needs a positive scale, got None")),
    ("choice-initialize-scheme",
     lambda: init.initialize_(nn.Linear(3, 3), "kaiming"),
     raises(ValueError, "unknown initialization 'kaiming'; valid choices are pytorch_default")),
    ("silent-initialize-no-linear",
     lambda: init.initialize_(nn.Sequential(nn.ReLU()), "he_normal"),
     raises(ValueError, "initialize_: model Sequential has no nn.Linear layers")),
    ("silent-standard-uniform-no-linear",
     lambda: init.standard_uniform_(nn.ReLU()),
     raises(ValueError, "standard_uniform_: model ReLU has no nn.Linear layers")),
    ("type-initialize-generator-int",
     lambda: init.initialize_(nn.Linear(3, 3), "he_normal", generator=0),
     raises(TypeError, "generator must be a torch.Generator or None, got 0 (int)")),
    ("type-mlp-generator-int",
     lambda: models.DeepMLP(4, 3, generator=0),
     raises(TypeError, "generator must be a torch.Generator or None, got 0")),
    ("type-lsuv-generator-int",
     lambda: init.lsuv_(_mlp(), _x(), generator=0),
     raises(TypeError, "generator must be a torch.Generator or None")),
    ("type-recipe-generator-int",
     lambda: init.apply_recipe_(_mlp(), "he", generator=1),
     raises(TypeError, "generator must be a torch.Generator or None, got 1")),
    ("type-by-name-generator-int",
     lambda: init.initialize_by_name_(_mlp(), "weight", "he_normal", generator=3),
     raises(TypeError, "generator must be a torch.Generator or None, got 3")),
    ("obscure-xavier-std-zero-fans",
     lambda: init.xavier_std(0, 0), raises(ValueError, "fan_in must be an integer >= 1, got 0")),
    ("obscure-he-std-negative-fan",
     lambda: init.he_std(-4), raises(ValueError, "fan_in must be an integer >= 1, got -4")),
    ("type-he-std-float-fan",
     lambda: init.he_std(4.0), raises(TypeError, "fan_in must be an integer >= 1, got 4.0")),
    ("finite-xavier-bound-negative-gain",
     lambda: init.xavier_bound(3, 4, gain=-1.0),
     raises(ValueError, "gain must be a finite positive number, got -1.0")),
    ("finite-he-std-gain-inf",
     lambda: init.he_std(4, gain=INF), raises(ValueError, "gain must be a finite positive number")),
    ("finite-expected-std-scale-inf",
     lambda: init.expected_weight_std("uniform", 4, 4, scale=INF),
     raises(ValueError, "scale must be a finite positive number, got inf")),
    ("type-expected-std-fan-none",
     lambda: init.expected_weight_std("xavier_normal", None, 4),
     raises(TypeError, "fan_in must be an integer >= 1, got None")),
    ("finite-uniform-std-inf",
     lambda: init.uniform_std(INF), raises(ValueError, "bound must be a finite positive number")),
    ("type-default-bound-bool",
     lambda: init.pytorch_default_bound(True),
     raises(TypeError, "fan_in must be an integer >= 1, got True")),
    ("finite-lsuv-tolerance-inf",
     lambda: init.lsuv_(_mlp(), _x(), tolerance=INF),
     raises(ValueError, "tolerance must be a finite positive number, got inf")),
    ("obscure-lsuv-wrong-features",
     lambda: init.lsuv_(_mlp(), _x(6, 5)),
     raises(ValueError, "x has 5 features (shape (6, 5)) but the model's first layer takes 4")),
    ("type-lsuv-x-list",
     lambda: init.lsuv_(_mlp(), [[1.0] * 4] * 3), raises(TypeError, "x must be a torch.Tensor")),
    ("type-lsuv-iterations-bool",
     lambda: init.lsuv_(_mlp(), _x(), max_iterations=True),
     raises(ValueError, "max_iterations must be a positive integer, got True")),
    ("finite-by-name-scale-inf",
     lambda: init.initialize_by_name_(_mlp(), "weight", "normal", scale=INF),
     raises(ValueError, "scale must be a finite positive number, got inf")),
    ("finite-by-name-gain-inf",
     lambda: init.initialize_by_name_(_mlp(), "weight", "he_normal", gain=INF),
     raises(ValueError, "gain must be finite and positive, got inf")),
    ("obscure-init-by-name-pattern-int",
     lambda: init.initialize_by_name_(_mlp(), 5, "zeros"),
     raises(TypeError, "pattern must be a regular expression (a string), got 5")),
    ("type-init-by-name-row-blocks-bool",
     lambda: init.initialize_by_name_(_mlp(), "weight", "zeros", row_blocks=True),
     raises(ValueError, "row_blocks must be a positive integer, got True")),
    ("valid-xavier-std", lambda: init.xavier_std(512, 256), equals(math.sqrt(2 / 768))),
    ("valid-he-std-numpy-int", lambda: init.he_std(np.int64(512)), equals(0.0625)),

    # --- models ----------------------------------------------------------------------------
    ("type-mlp-bool-in-features",
     lambda: models.DeepMLP(True, 3),
     raises(TypeError, "in_features must be an integer >= 1, got True (bool)")),
    ("type-mlp-none-width",
     lambda: models.DeepMLP(4, 3, width=None),
     raises(TypeError, "width must be an integer >= 1, got None")),
    ("type-mlp-float-width",
     lambda: models.DeepMLP(4, 3, width=8.0),
     raises(TypeError, "width must be an integer >= 1, got 8.0")),
    ("type-mlp-bool-depth",
     lambda: models.DeepMLP(4, 3, depth=True), raises(TypeError, "depth must be an integer >= 2")),
    ("choice-mlp-depth-one",
     lambda: models.DeepMLP(4, 3, depth=1), raises(ValueError, "depth must be an integer >= 2")),
    ("choice-mlp-norm",
     lambda: models.DeepMLP(4, 3, norm="batchnorm"),
     raises(ValueError, "unknown normalization 'batchnorm'; valid choices are None, batch")),
    ("choice-mlp-activation",
     lambda: models.DeepMLP(4, 3, activation="Relu"),
     raises(ValueError, "unknown activation 'Relu'; valid choices are")),
    ("shape-mlp-wrong-features",
     lambda: _mlp()(_x(2, 5)),
     raises(ValueError, "DeepMLP was built for 4 input features (x of shape (batch, 4)), got x "
                        "of shape (2, 5)")),
    ("obscure-mlp-integer-input",
     lambda: _mlp()(torch.ones(2, 4, dtype=torch.int64)),
     raises(TypeError, "DeepMLP needs a floating-point input, got x of dtype torch.int64")),
    ("type-mlp-list-input",
     lambda: _mlp()([[1.0] * 4]), raises(TypeError, "DeepMLP needs a tensor input, got list")),
    ("type-block-bool-size",
     lambda: models.Block(True, 4, "relu"), raises(TypeError, "in_features must be an integer")),
    ("choice-make-norm-groups-zero",
     lambda: models.make_norm("group", 16, groups=0),
     raises(ValueError, "groups must be an integer >= 1, got 0")),
    ("valid-mlp-numpy-sizes",
     lambda: models.DeepMLP(np.int64(4), 3, width=8, depth=np.int64(3)).in_features, equals(4)),

    # --- data ------------------------------------------------------------------------------
    ("shape-dataset-label-too-large",
     lambda: data.Dataset(_x(3), torch.tensor([0, 1, 4]), "classification", 3),
     raises(ValueError, "label 4 is outside [0, classes) = [0, 3)")),
    ("shape-dataset-label-negative",
     lambda: data.Dataset(_x(3), torch.tensor([0, -1, 2]), "classification", 3),
     raises(ValueError, "label -1 is outside [0, classes)")),
    ("choice-dataset-one-class",
     lambda: data.Dataset(_x(3), torch.zeros(3, dtype=torch.int64), "classification", 1),
     raises(ValueError, "needs classes >= 2, got 1")),
    ("choice-dataset-classes-missing",
     lambda: data.Dataset(_x(3), torch.zeros(3, dtype=torch.int64), "classification"),
     raises(ValueError, "needs classes >= 2, got 0")),
    ("type-dataset-float-labels",
     lambda: data.Dataset(_x(3), torch.zeros(3), "classification", 3),
     raises(TypeError, "integer class indices (int64), got dtype torch.float32")),
    ("type-dataset-x-list",
     lambda: data.Dataset([[1.0]], torch.zeros(1), "regression"),
     raises(TypeError, "x must be a torch.Tensor, got list")),
    ("type-dataset-integer-x",
     lambda: data.Dataset(torch.ones(3, 2, dtype=torch.int64), torch.zeros(3, 1), "regression"),
     raises(TypeError, "x must be a floating-point tensor, got dtype torch.int64")),
    ("shape-dataset-1d-x",
     lambda: data.Dataset(torch.ones(3), torch.zeros(3, 1), "regression"),
     raises(ValueError, "x must have shape (examples, features, ...), got shape (3,)")),
    ("shape-dataset-lengths",
     lambda: data.Dataset(_x(3), torch.zeros(4, 1), "regression"),
     raises(ValueError, "x has 3 examples but y has 4")),
    ("choice-dataset-task",
     lambda: data.Dataset(_x(3), torch.zeros(3, 1), "regresion"),
     raises(ValueError, "unknown task 'regresion'; valid choices are classification, regression")),
    ("choice-dataset-regression-classes",
     lambda: data.Dataset(_x(3), torch.zeros(3, 1), "regression", 3),
     raises(ValueError, "a regression Dataset has no classes")),
    ("type-dataset-regression-integer-y",
     lambda: data.Dataset(_x(3), torch.zeros(3, 1, dtype=torch.int64), "regression"),
     raises(TypeError, "regression targets y must be floating point")),
    ("valid-dataset-labels-per-step",
     lambda: len(data.Dataset(_x(4), torch.zeros(4, 5, dtype=torch.int64), "classification", 3)),
     equals(4)),
    ("silent-split-empty-train",
     lambda: _classes(4).split(0.999),
     raises(ValueError, "test_fraction=0.999 splits 4 examples into 0 for training and 4 for "
                        "testing")),
    ("silent-split-empty-test",
     lambda: _classes(4).split(0.01),
     raises(ValueError, "splits 4 examples into 4 for training and 0 for testing")),
    ("choice-split-fraction-one",
     lambda: _classes(4).split(1.0),
     raises(ValueError, "test_fraction must be in the open interval (0, 1), got 1.0")),
    ("finite-split-fraction-nan",
     lambda: _classes(4).split(NAN), raises(ValueError, "test_fraction must be in the open")),
    ("type-split-seed-float",
     lambda: _classes(4).split(0.5, seed=1.5),
     raises(TypeError, "seed must be an integer >= 0, got 1.5")),
    ("valid-split-sizes",
     lambda: tuple(len(part) for part in _classes(8).split(0.25)), equals((6, 2))),
    ("silent-teacher-noise-nan",
     lambda: data.teacher_regression(noise=NAN),
     raises(ValueError, "noise must be a finite number >= 0, got nan")),
    ("finite-teacher-noise-inf",
     lambda: data.teacher_regression(noise=INF),
     raises(ValueError, "noise must be a finite number >= 0, got inf")),
    ("obscure-teacher-samples-none",
     lambda: data.teacher_classification(samples=None),
     raises(TypeError, "samples must be an integer >= 1, got None")),
    ("type-teacher-samples-bool",
     lambda: data.teacher_classification(samples=True),
     raises(TypeError, "samples must be an integer >= 1, got True")),
    ("type-teacher-features-float",
     lambda: data.teacher_regression(features=2.5),
     raises(TypeError, "features must be an integer >= 1, got 2.5")),
    ("choice-teacher-one-class",
     lambda: data.teacher_classification(classes=1),
     raises(ValueError, "classes must be an integer >= 2, got 1")),
    ("type-digits-limit-float",
     lambda: data.digits(limit=2.5), raises(TypeError, "limit must be an integer >= 1, got 2.5")),
    ("obscure-dataset-to-unknown-device",
     lambda: _classes().to("gpu"),
     raises(ValueError, "unknown device 'gpu'; valid choices are cpu, cuda (or cuda:N) and mps")),

    # --- training --------------------------------------------------------------------------
    ("silent-train-steps-true",
     lambda: _train(steps=True), raises(ValueError, "steps must be a positive integer, got True")),
    ("choice-train-steps-zero",
     lambda: _train(steps=0), raises(ValueError, "steps must be a positive integer, got 0")),
    ("silent-train-empty-data",
     lambda: _train(dataset=_empty_classes()),
     raises(ValueError, "data has no examples: there is nothing to train on")),
    ("silent-evaluate-empty-data",
     lambda: training.evaluate(_mlp(), _empty_classes()),
     raises(ValueError, "data has no examples")),
    ("finite-train-lr-inf",
     lambda: _train(lr=INF), raises(ValueError, "lr must be a finite positive number, got inf")),
    ("finite-train-lr-nan",
     lambda: _train(lr=NAN), raises(ValueError, "lr must be a finite positive number, got nan")),
    ("choice-train-optimizer",
     lambda: _train(optimizer="adamm"),
     raises(ValueError, "unknown optimizer 'adamm'; valid choices are sgd, momentum, adam")),
    ("finite-train-clip-norm-inf",
     lambda: _train(clip_norm=INF),
     raises(ValueError, "clip_norm must be a finite positive number, got inf")),
    ("type-train-batch-size-bool",
     lambda: _train(batch_size=True),
     raises(ValueError, "batch_size must be a positive integer, got True")),
    ("choice-train-seed-negative",
     lambda: _train(seed=-1), raises(ValueError, "seed must be an integer >= 0, got -1")),
    ("type-train-data-tuple",
     lambda: training.train(_mlp(), (_x(), torch.zeros(6)), steps=1, lr=0.1),
     raises(TypeError, "data must be a gradpath.data.Dataset, got tuple")),
    ("obscure-train-wrong-features",
     lambda: _train(dataset=_classes(features=5)),
     raises(ValueError, "the model takes 4 input features but data.x has 5")),
    ("obscure-evaluate-wrong-features",
     lambda: training.evaluate(_mlp(), _classes(features=5)),
     raises(ValueError, "the model takes 4 input features but data.x has 5")),
    ("obscure-train-too-few-outputs",
     lambda: _train(dataset=_classes(classes=5)),
     raises(ValueError, "the model's output has shape (8, 3) but the data has 5 classes")),
    ("silent-evaluate-regression-broadcast",
     lambda: training.evaluate(nn.Linear(4, 1),
                               data.Dataset(_x(6), torch.zeros(6), "regression")),
     raises(ValueError, "output has shape (6, 1) but the targets y have shape (6,)")),
    ("silent-train-regression-broadcast",
     lambda: _train(models.DeepMLP(4, 1, width=8, depth=3),
                    data.Dataset(_x(6), torch.zeros(6), "regression")),
     raises(ValueError, "output has shape (6, 1) but the targets y have shape (6,)")),
    ("valid-evaluate-keeps-mode-on-error", _evaluate_keeps_mode, equals(True)),
    ("valid-train-regression", lambda: _train(models.DeepMLP(4, 1, width=8, depth=3),
                                              _regression()).steps, equals(2)),
    ("silent-final-loss-window-zero",
     lambda: _train().final_loss(window=0),
     raises(ValueError, "window must be an integer >= 1, got 0")),
    ("obscure-relative-update-lists",
     lambda: training.relative_update_norms([[1.0]], [[2.0]]),
     raises(TypeError, "before[0] must be a floating-point tensor, got list")),
    ("obscure-relative-update-one-tensor",
     lambda: training.relative_update_norms(torch.ones(3), torch.ones(3)),
     raises(TypeError, "before and after must be lists of tensors")),
    ("valid-relative-update",
     lambda: training.relative_update_norms([torch.ones(4)], [2 * torch.ones(4)]), equals([1.0])),
    ("finite-optimizer-lr-inf",
     lambda: training.make_optimizer("sgd", list(_mlp().parameters()), lr=INF),
     raises(ValueError, "lr must be a finite positive number, got inf")),
    ("type-optimizer-lr-string",
     lambda: training.make_optimizer("sgd", list(_mlp().parameters()), lr="0.1"),
     raises(TypeError, "lr must be a real number, got '0.1'")),
    ("empty-optimizer-no-parameters",
     lambda: training.make_optimizer("sgd", [], lr=0.1),
     raises(ValueError, "make_optimizer got no parameters")),
    ("choice-optimizer-name",
     lambda: training.make_optimizer("SGD", list(_mlp().parameters()), lr=0.1),
     raises(ValueError, "unknown optimizer 'SGD'; valid choices are sgd")),
    ("finite-update-ratio-lr-inf",
     lambda: training.update_to_data_ratios(_train(), INF),
     raises(ValueError, "lr must be a finite positive number, got inf")),
    ("type-check-run-length-bool",
     lambda: training.check_run_length(10, checkpoints=True),
     raises(ValueError, "checkpoints must be an integer in [1, steps], got True")),

    # --- device, scale, sweeps -------------------------------------------------------------
    ("choice-pick-device-unknown",
     lambda: device.pick_device("gpu"),
     raises(ValueError, "unknown device 'gpu'; valid choices are cuda, mps, cpu")),
    ("obscure-pick-device-int",
     lambda: device.pick_device(0), raises(ValueError, "unknown device 0 (int)")),
    ("obscure-scale-unknown-device",
     lambda: scale.current_scale("gpu"), raises(ValueError, "unknown device 'gpu'")),
    ("type-seed-everything-bool",
     lambda: device.seed_everything(True),
     raises(ValueError, "seed must be a non-negative integer, got True")),
    ("obscure-profile-unknown-device",
     lambda: sweeps.gradient_profile(_classes(), depth=3, width=8, device="gpu"),
     raises(ValueError, "unknown device 'gpu'")),
    ("choice-profile-seed-negative",
     lambda: sweeps.gradient_profile(_classes(), depth=3, width=8, seed=-1),
     raises(ValueError, "seed must be an integer >= 0, got -1")),
    ("type-profile-depth-float",
     lambda: sweeps.gradient_profile(_classes(), depth=3.0, width=8),
     raises(TypeError, "depth must be an integer >= 2")),
    ("empty-profile-data",
     lambda: sweeps.gradient_profile(_empty_classes(), depth=3, width=8),
     raises(ValueError, "data has no examples")),
    ("type-profile-over-seeds-bool",
     lambda: sweeps.profile_over_seeds(_classes(), True, depth=3, width=8),
     raises(TypeError, "seeds must be an integer >= 1, got True")),
    ("silent-geometric-mean-string",
     lambda: sweeps.geometric_mean("12"),
     raises(TypeError, "values must be a sequence of numbers")),
    ("valid-geometric-mean-zero", lambda: sweeps.geometric_mean([0.0, 2.0]), equals(0.0)),
    ("type-depth-sweep-string",
     lambda: sweeps.depth_sweep(_classes(), "34", ["relu"]),
     raises(TypeError, "depths must be a sequence of integers")),

    # --- activations and numerics ----------------------------------------------------------
    ("choice-activation-none",
     lambda: activations.get_activation(None),
     raises(ValueError, "unknown activation None; valid choices are elu, gelu")),
    ("obscure-derivative-string-x",
     lambda: activations.derivative("relu", "abc"),
     raises(TypeError, "x must be a tensor or numbers, got str")),
    ("type-grid-points-bool",
     lambda: activations.max_derivative_on_grid("relu", points=True),
     raises(ValueError, "points must be an integer >= 2, got True")),
    ("finite-grid-infinite-low",
     lambda: activations.max_derivative_on_grid("relu", low=-INF),
     raises(ValueError, "need finite low < high, got low=-inf")),
    ("valid-derivative-list", lambda: activations.derivative("relu", [-1.0, 2.0]).tolist(),
     equals([0.0, 1.0])),
    ("obscure-tensor-norms-one-tensor",
     lambda: numerics.tensor_norms(torch.ones(3)),
     raises(TypeError, "tensor_norms takes a sequence of tensors")),
    ("obscure-tensor-norms-integer",
     lambda: numerics.tensor_norms([torch.ones(3, dtype=torch.int64)]),
     raises(TypeError, "tensors[0] must be a floating-point tensor, got dtype torch.int64")),
    ("obscure-tensor-norms-list",
     lambda: numerics.tensor_norms([[1.0]]),
     raises(TypeError, "tensors[0] must be a floating-point tensor, got list")),
    ("silent-combined-norm-string",
     lambda: numerics.combined_norm("12"), raises(TypeError, "got the string '12'")),
    ("silent-combined-norm-negative",
     lambda: numerics.combined_norm([-3.0, 4.0]),
     raises(ValueError, "a norm cannot be negative, got -3.0")),
    ("silent-statistics-empty",
     lambda: numerics.float64_statistics(torch.empty(0)),
     raises(ValueError, "float64_statistics needs at least one entry, got shape (0,)")),
    ("obscure-statistics-list",
     lambda: numerics.float64_statistics([1.0]),
     raises(TypeError, "tensor must be a torch.Tensor, got list")),

    # --- precision -------------------------------------------------------------------------
    ("obscure-ulp-string",
     lambda: precision.ulp("a", "fp16"), raises(TypeError, "x must be a real number, got 'a'")),
    ("obscure-lost-update-string",
     lambda: precision.lost_update_threshold("1"),
     raises(TypeError, "weight must be a real number, got '1'")),
    ("finite-lost-update-nan",
     lambda: precision.lost_update_threshold(NAN),
     raises(ValueError, "weight must be a finite number, got nan")),
    ("obscure-cast-report-list",
     lambda: precision.cast_report([1.0, 2.0], "fp16"),
     raises(TypeError, "values must be a torch.Tensor, got list")),
    ("type-cast-report-scale-string",
     lambda: precision.cast_report(torch.ones(3), "fp16", "2"),
     raises(TypeError, "scale must be a real number, got '2'")),
    ("finite-cast-report-scale-inf",
     lambda: precision.cast_report(torch.ones(3), "fp16", INF),
     raises(ValueError, "scale must be a finite positive number, got inf")),
    ("silent-scale-sweep-float-exponent",
     lambda: precision.scale_sweep(torch.ones(3), "fp16", [0.5]),
     raises(TypeError, "exponents[0] must be an integer, got 0.5")),
    ("obscure-scale-sweep-int",
     lambda: precision.scale_sweep(torch.ones(3), "fp16", 5),
     raises(TypeError, "exponents must be a sequence of integers")),
    ("choice-resolve-dtype",
     lambda: precision.resolve_dtype("fp12"),
     raises(ValueError, "unknown format 'fp12'; valid choices are float32")),
    ("silent-lost-update-decrease-string",
     lambda: precision.lost_update_threshold(1.0, "fp16", decrease="yes"),
     raises(TypeError, "decrease must be True or False, got 'yes'")),
    ("obscure-scale-monitor-none",
     lambda: precision.ScaleMonitor(None),
     raises(TypeError, "scaler must be a torch.amp.GradScaler, got NoneType")),
    ("obscure-capture-gradients-none",
     lambda: precision.capture_gradients(None, lambda: torch.tensor(1.0)),
     raises(TypeError, "model must be a torch.nn.Module, got NoneType")),

    # --- gradients through time ------------------------------------------------------------
    ("obscure-time-model-int",
     lambda: through_time.input_gradient_norms(5, torch.ones(5, 2, 3)),
     raises(ValueError, "expected a recurrent module or a callable cell(x_t, state), got int")),
    ("empty-time-batch",
     lambda: through_time.state_gradient_norms(nn.RNN(3, 4), torch.ones(5, 0, 3)),
     raises(ValueError, "x is empty (shape (5, 0, 3))")),
    ("obscure-time-seed-string",
     lambda: through_time.input_gradient_norms(nn.RNN(3, 4), torch.ones(5, 2, 3), seed="a"),
     raises(TypeError, "seed must be an integer >= 0, got 'a'")),
    ("obscure-time-integer-dtype",
     lambda: through_time.input_gradient_norms(nn.RNN(3, 4), torch.ones(5, 2, 3),
                                               dtype=torch.int64),
     raises(TypeError, "dtype must be a floating-point torch.dtype")),
    ("obscure-time-x-list",
     lambda: through_time.jacobian_norms(nn.RNN(3, 4), [[1.0]]),
     raises(TypeError, "x must be a torch.Tensor, got list")),
    ("obscure-time-dim-string",
     lambda: through_time.jacobian_norms(nn.RNNCell(3, 4), torch.ones(2, 5, 3), time_dim="1"),
     raises(TypeError, "time_dim must be an integer, got '1'")),
    ("obscure-unroll-time-dim-string",
     lambda: through_time.unroll(nn.RNNCell(3, 4), torch.ones(2, 5, 3), time_dim="1"),
     raises(TypeError, "time_dim must be an integer, got '1'")),
    ("obscure-per-step-factor-skip",
     lambda: _rnn_profile().per_step_factor(skip="a"),
     raises(TypeError, "skip must be an integer >= 0, got 'a'")),
    ("silent-at-distance-bool",
     lambda: _rnn_profile().at_distance(True),
     raises(ValueError, "distance must be an integer in [0, 4], got True")),

    # --- the chapters' recurrent nets (gradpath.experiments) --------------------------------
    ("silent-sequence-classifier-bool-size",
     lambda: SequenceClassifier("rnn", True, 4, 2),
     raises(TypeError, "input_size must be an integer >= 1, got True (bool)")),
    ("type-sequence-classifier-float-classes",
     lambda: SequenceClassifier("gru", 3, 4, 2.0),
     raises(TypeError, "classes must be an integer >= 1, got 2.0 (float)")),
    ("silent-vanilla-rnn-bool-size",
     lambda: VanillaRNN(3, True),
     raises(TypeError, "hidden_size must be an integer >= 1, got True (bool)")),
    ("valid-vanilla-rnn-numpy-size",
     lambda: type(VanillaRNN(np.int64(3), 4).input.in_features), equals(int)),

    # --- the gradient doctor ---------------------------------------------------------------
    ("obscure-checkup-loss-not-connected",
     _checkup_unconnected, raises(ValueError, "that needs no gradient")),
    ("obscure-accurate-norm-list",
     lambda: doctor.accurate_norm([1.0]),
     raises(TypeError, "tensor must be a floating-point torch.Tensor, got list")),
    ("obscure-checkup-inputs-list",
     lambda: doctor.checkup(nn.Linear(2, 2), [[1.0, 2.0]], torch.zeros(1, 2),
                            nn.functional.mse_loss, steps=1),
     raises(TypeError, "inputs must be a tensor or a non-empty sequence of tensors, got list")),
    ("type-doctor-sample-every-bool",
     lambda: doctor.Doctor(nn.Linear(2, 2), sample_every=True),
     raises(ValueError, "sample_every must be a positive integer, got True")),
    ("type-checkup-steps-bool",
     lambda: doctor.checkup(nn.Linear(2, 2), torch.ones(3, 2), torch.zeros(3, 2),
                            nn.functional.mse_loss, steps=True),
     raises(ValueError, "steps must be a positive integer, got True")),

    # --- quizzes ---------------------------------------------------------------------------
    ("silent-quiz-answer-without-text",
     lambda: _quiz(_answer(_question(), 1, answer=_DELETE)),
     raises(QuizError, "a choice needs 'answer' text (or 'code'), got None")),
    ("silent-quiz-blank-answer-text",
     lambda: _quiz(_answer(_question(), 1, answer="  ")),
     raises(QuizError, "a choice needs 'answer' text")),
    ("silent-quiz-correct-string",
     lambda: _quiz(_answer(_question(), 0, correct="true")),
     raises(QuizError, "'correct' must be true or false (a JSON boolean), got 'true'")),
    ("silent-quiz-range-without-range",
     lambda: _quiz(_answer(_question("numeric"), 0, type="range", value=_DELETE)),
     raises(QuizError, "a 'range' answer needs a 'range' key")),
    ("silent-quiz-negative-precision",
     lambda: _quiz(_question("numeric", precision=-3)),
     raises(QuizError, "'precision' (significant figures) must be an integer from 1 to 100")),
    ("silent-quiz-bool-precision",
     lambda: _quiz(_question("numeric", precision=True)),
     raises(QuizError, "got True")),
    ("silent-quiz-value-string",
     lambda: _quiz(_answer(_question("numeric"), 0, value="abc")),
     raises(QuizError, "'value' must be a finite number, got 'abc'")),
    ("silent-quiz-value-nan",
     lambda: _quiz(_answer(_question("numeric"), 0, value=NAN)),
     raises(QuizError, "'value' must be a finite number, got nan")),
    ("silent-quiz-range-reversed",
     lambda: _quiz(_answer(_question("numeric"), 0, type="range", value=_DELETE, range=[5, 3])),
     raises(QuizError, "'range' must be [low, high] with finite numbers and low < high")),
    ("silent-quiz-expected-missing",
     lambda: _quiz({k: v for k, v in _question("numeric").items() if k != "expected"}),
     raises(QuizError, "numeric needs 'expected'")),
    ("silent-quiz-expected-wrong",
     lambda: _quiz(_question("numeric", expected=5)),
     raises(QuizError, "typing the expected 5 gets the default feedback")),
    ("silent-quiz-no-feedback",
     lambda: _quiz(_answer(_question(), 0, feedback="")),
     raises(QuizError, "every answer needs 'feedback' text")),
    ("silent-quiz-markdown",
     lambda: _quiz(_question(question="Which is **even**?")),
     raises(QuizError, "Markdown")),
    ("choice-quiz-type",
     lambda: _quiz(_question(type="multiple")),
     raises(QuizError, "type 'multiple' is not one of multiple_choice, many_choice")),
    ("choice-quiz-numeric-answer-type",
     lambda: _quiz(_answer(_question("numeric"), 0, type="exact")),
     raises(QuizError, "a numeric answer's 'type' must be one of value, range, default")),
    ("silent-quiz-two-correct",
     lambda: _quiz(_answer(_question(), 1, correct=True)),
     raises(QuizError, "exactly 1 correct")),
    ("type-quiz-not-a-list",
     lambda: _quiz("questions"), raises(QuizError, "needs a list of at least 8 questions")),
    ("type-quiz-answer-not-object",
     lambda: _quiz(_question(answers=["2", "3"])),
     raises(QuizError, "an answer must be an object, got '2'")),
]


@pytest.mark.parametrize(("call", "expected"),
                         [pytest.param(call, expected, id=name) for name, call, expected in CASES])
def test_bad_input(call: Callable[[], Any], expected: Raises | Gives) -> None:
    if isinstance(expected, Raises):
        with pytest.raises(expected.error, match=re.escape(expected.fragment)):
            call()
    else:
        got = call()
        assert expected.check(got), f"expected {expected.what}, got {got!r}"


def test_case_ids_are_unique_and_name_their_kind() -> None:
    names = [name for name, _, _ in CASES]
    assert len(names) == len(set(names))
    kinds = {"silent", "obscure", "type", "finite", "empty", "shape", "choice", "valid"}
    assert all(name.split("-")[0] in kinds for name in names)


def test_probes_still_leave_the_model_as_found_when_they_raise() -> None:
    model = _mlp(norm="batch")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError):
        _signal(lambda out, y: torch.tensor(1.0, requires_grad=True), model=model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
