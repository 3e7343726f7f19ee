"""The one decision rule (opml.automl.threshold.decide) that predict and every scorer apply."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from opml.automl.threshold import decide, decision_of


def test_a_binary_threshold_sends_ties_to_the_positive_class():
    p = np.array([[0.7, 0.3], [0.69, 0.31], [0.71, 0.29], [0.3, 0.7]])
    assert decide(p, 0.3, 1).tolist() == [1, 1, 0, 1]  # p == threshold: positive
    assert decide(p, 0.7, 0).tolist() == [0, 1, 0, 1]  # the positive class may be column 0
    assert decide(p, 0.3, 1).dtype == np.argmax(p, axis=1).dtype


def test_no_threshold_or_more_than_two_classes_is_the_argmax():
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8]])
    assert decide(p, 0.05, 1).tolist() == [1, 0, 2]  # a threshold means nothing for three classes
    assert decide(p[:, :2], None, 0).tolist() == [1, 0, 0]  # argmax ties go to the first column


def test_decision_of_reads_a_fitted_models_threshold():
    binary = SimpleNamespace(classes_=np.array(["no", "yes"]), threshold_=np.float64(0.25), positive_index_=1)
    assert decision_of(binary) == (0.25, 1) and type(decision_of(binary)[0]) is float
    three = SimpleNamespace(classes_=np.array(["a", "b", "c"]), threshold_=0.25, positive_index_=0)
    assert decision_of(three) == (None, 0)
    assert decision_of(SimpleNamespace(classes_=np.array(["no", "yes"]))) == (None, 1)
