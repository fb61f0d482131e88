"""The checks behind the chapters' exercises: ``from resnet_lab.book.exercises import check_...``.

Every chapter's exercises follow one pattern. The reader's cell holds a stub (``answer = None``,
or a function whose body is ``raise NotImplementedError``); the cell below it, tagged
``raises-exception``, calls ``check_...(answer)``, which raises :class:`NotAttempted` while the
stub is there, raises :class:`NotYet` naming the mistake it sees, or prints "correct! ...".
A "predict, then run" cell calls ``run_...(prediction, ...)``: nothing is measured until the
reader has written a prediction; then it measures, prints what it measured, and judges the
prediction by the measurement.

One module per chapter holds its checks (chapter 5's whole-network check has one of its own,
:mod:`~resnet_lab.book.exercises.own_resnet`); :mod:`resnet_lab.book.exercises.tools` what they
share; :mod:`resnet_lab.book.exercises.solutions` the published solutions, which
``tests/test_exercises.py`` runs against every check, beside planted mistakes that each check
must name.
"""

from resnet_lab.book.exercises.background import (
    check_diagnose,
    check_settled,
    run_test_gap_prediction,
)
from resnet_lab.book.exercises.deep_networks import (
    check_collapsed_features,
    check_stream_std,
    run_plain110,
)
from resnet_lab.book.exercises.finetuning import (
    check_layerwise_groups,
    check_linear_probe,
    run_zero_lr_prediction,
)
from resnet_lab.book.exercises.full_network import (
    check_affine,
    check_article_pair,
    check_cifar_params,
    check_loop_number,
)
from resnet_lab.book.exercises.own_resnet import check_cifar_resnet
from resnet_lab.book.exercises.residual_block import (
    check_option_c,
    check_preact_bottleneck,
    run_zero_init_prediction,
)
from resnet_lab.book.exercises.residual_math import (
    check_gradient_gain,
    check_path_count,
    check_two_basic_blocks,
)
from resnet_lab.book.exercises.tools import NotAttempted, NotYet
from resnet_lab.book.exercises.trained_network import check_seeds_needed, run_shortcut_lesion
from resnet_lab.book.exercises.training import (
    check_label_smoothing,
    check_onecycle_cosine,
    check_test_loss,
)
from resnet_lab.book.exercises.what_next import (
    check_kept,
    check_post_norm_block,
    run_scale_prediction,
)

__all__ = [
    "NotAttempted",
    "NotYet",
    "check_affine",
    "check_article_pair",
    "check_cifar_params",
    "check_cifar_resnet",
    "check_collapsed_features",
    "check_diagnose",
    "check_gradient_gain",
    "check_kept",
    "check_label_smoothing",
    "check_layerwise_groups",
    "check_linear_probe",
    "check_loop_number",
    "check_onecycle_cosine",
    "check_option_c",
    "check_path_count",
    "check_post_norm_block",
    "check_preact_bottleneck",
    "check_seeds_needed",
    "check_settled",
    "check_stream_std",
    "check_test_loss",
    "check_two_basic_blocks",
    "run_plain110",
    "run_scale_prediction",
    "run_shortcut_lesion",
    "run_test_gap_prediction",
    "run_zero_init_prediction",
    "run_zero_lr_prediction",
]
