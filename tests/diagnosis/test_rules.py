"""Each rule on hand-made series: the thresholds of trainer/diagnosis/thresholds.py, at their edges."""

import numpy as np
import pytest

from trainer import diagnosis as d


def ctx(**overrides) -> d.Context:
    base = dict(optimizer="sgd", lr=0.1, loss="cross_entropy", classes=10, activation="relu", steps_per_epoch=10)
    return d.Context(**{**base, **overrides})


def series(values, start=0, every=1):
    values = np.asarray(values, dtype=float)
    return np.arange(start, start + every * len(values), every), values


def falling_loss(n=200, end=0.1):
    return series(np.linspace(2.3, end, n))


def test_update_ratio_sustained_above_1e_2_is_too_high_and_says_since_when():
    ratios = [1e-3] * 30 + [3e-2] * 10
    found = d.learning_rate_too_high(
        {"update_ratio/fc1.weight": series(ratios, every=10), "loss": falling_loss()}, ctx()
    )
    assert found and found.step == 300 and "3.0e-02 on fc1.weight (weights) since step 300" in found.evidence


def test_a_few_high_ratios_are_not_sustained():
    ratios = [1e-3] * 30 + [3e-2, 1e-3] * 5
    assert d.learning_rate_too_high({"update_ratio/fc1.weight": series(ratios)}, ctx()) is None


def test_biases_do_not_count_for_the_learning_rate_rules():
    assert d.learning_rate_too_high({"update_ratio/fc1.bias": series([0.5] * 40)}, ctx()) is None


def test_tiny_updates_after_convergence_are_not_a_low_learning_rate():
    ratios = {"update_ratio/fc1.weight": series([1e-5] * 40)}
    assert d.learning_rate_too_low({**ratios, "loss": falling_loss(end=0.01)}, ctx()) is None
    assert d.learning_rate_too_low({**ratios, "loss": falling_loss(end=2.0)}, ctx()) is not None


def test_dead_fraction_thresholds():
    assert d.dead_relus({"dead_fraction/act1": series([0.39] * 10)}, ctx()) is None
    assert d.dead_relus({"dead_fraction/act1": series([0.45] * 10)}, ctx()).severity == "warning"
    assert d.dead_relus({"dead_fraction/act1": series([0.95] * 10)}, ctx()).severity == "error"


def test_underfitting_needs_low_and_close_accuracies():
    low = {"train_acc": series([0.5] * 10), "val_acc": series([0.48] * 10)}
    assert d.underfitting(low, ctx()) is not None
    assert d.underfitting({"train_acc": series([0.95] * 10), "val_acc": series([0.94] * 10)}, ctx()) is None
    # both below 0.8, not only the training accuracy
    assert d.underfitting({"train_acc": series([0.78] * 10), "val_acc": series([0.82] * 10)}, ctx()) is None
    young = {"train_acc": series([0.3, 0.35, 0.36]), "val_acc": series([0.3, 0.35, 0.36])}
    assert d.underfitting(young, ctx()) is not None
    young_val_high = {"train_acc": series([0.4, 0.45, 0.46]), "val_acc": series([0.5, 0.5, 0.5])}
    assert d.underfitting(young_val_high, ctx()) is None


def test_an_ended_run_with_low_accuracies_is_underfitting_unless_its_gap_is_overfittings():
    # a gap of 0.07 (a 2-unit model on digits, 0.45 against 0.38) may still close or open while running
    apart = {"train_acc": series([0.45] * 10), "val_acc": series([0.38] * 10)}
    assert d.underfitting(apart, ctx()) is None
    assert d.underfitting(apart, ctx(status="succeeded")) is not None
    overfit = {"train_acc": series([0.52] * 10), "val_acc": series([0.4] * 10)}
    assert d.underfitting(overfit, ctx(status="succeeded")) is None


def grad_norms(values: list[float]) -> dict:
    names = [f"fc{i + 1}" for i in range(len(values) - 1)] + ["out"]
    return {f"grad_norm/{name}.weight": series([value] * 10) for name, value in zip(names, values)}


def test_vanishing_gradients_shrink_towards_the_input():
    # every hidden layer's gradient vanished alike, the first a little above the median layer
    assert d.vanishing_gradients(grad_norms([4.9e-6, 4.1e-6, 4.5e-6, 4.3e-6, 5.9e-6, 6e-4]), ctx()) is not None
    assert d.vanishing_gradients(grad_norms([1e-5, 1e-4, 1e-3]), ctx()) is not None
    # not far enough below the output layer's
    assert d.vanishing_gradients(grad_norms([6e-5, 1e-4, 1e-3]), ctx()) is None
    # the first layer well above the middle ones: collapsed activations, not a vanished gradient
    assert d.vanishing_gradients(grad_norms([1e-5, 2e-6, 2e-6, 2e-6, 6e-4]), ctx()) is None


def test_overfitting_needs_a_large_gap_and_a_validation_set_that_stopped_gaining():
    still_gaining = {"train_acc": series(np.linspace(0.8, 1.0, 20)), "val_acc": series(np.linspace(0.7, 0.8, 20))}
    assert d.overfitting(still_gaining, ctx()) is None  # a gap alone: the model fits the training data first
    stalled = {
        "train_acc": series([*np.linspace(0.8, 1.0, 10), *[1.0] * 10]),
        "val_acc": series([*np.linspace(0.7, 0.8, 15), 0.79, 0.8, 0.78, 0.79, 0.8]),
    }
    assert "not improved for 3 epochs" in d.overfitting(stalled, ctx()).evidence
    rising_loss = {**still_gaining, "val_loss": series([*np.linspace(1.0, 0.5, 10), *np.linspace(0.55, 0.9, 10)])}
    assert "validation loss rose from 0.5" in d.overfitting(rising_loss, ctx()).evidence
    close = {"train_acc": series([1.0] * 20), "val_acc": series([0.95] * 20)}
    assert d.overfitting(close, ctx()) is None


def test_a_training_set_learnt_by_heart_far_ahead_of_validation_is_overfitting_even_while_it_creeps_up():
    far_behind = {"train_acc": series([1.0] * 20), "val_acc": series(np.linspace(0.6, 0.75, 20))}
    assert (
        "learnt by heart while validation accuracy lags 0.2 or more behind" in d.overfitting(far_behind, ctx()).evidence
    )
    near = {"train_acc": series([1.0] * 20), "val_acc": series(np.linspace(0.7, 0.85, 20))}
    assert d.overfitting(near, ctx()) is None  # 0.16 behind and still gaining: not yet
    learning = {"train_acc": series(np.linspace(0.5, 0.98, 20)), "val_acc": series(np.linspace(0.3, 0.7, 20))}
    assert d.overfitting(learning, ctx()) is None  # not learnt by heart


def test_initial_loss_far_from_ln_c():
    assert d.initial_loss_off({"loss": series([2.4, 2.0])}, ctx()) is None
    assert d.initial_loss_off({"loss": series([40.0, 2.0])}, ctx()).numbers["expected"] == np.log(10)
    assert d.initial_loss_off({"loss": series([9.2, 5.0])}, ctx(loss="svm")) is None


def test_a_stalled_validation_accuracy_is_information_not_a_warning():
    values = list(np.linspace(0.5, 0.9, 20)) + [0.89] * 20
    found = d.validation_stalled({"val_acc": series(values)}, ctx())
    assert found.severity == "info" and found.numbers["epochs_since"] == 20


def test_health_is_the_worst_severity():
    info = d.Finding("a", "info", "t", "e", "a")
    warning = d.Finding("b", "warning", "t", "e", "a")
    assert d.health([]) == "ok" and d.health([info]) == "info" and d.health([info, warning]) == "warning"


def weight_stds(stds: dict[str, float]) -> d.Series:
    return {f"weight_std/{tensor}": series([std]) for tensor, std in stds.items()}


def test_norm_scales_of_ones_and_a_zero_output_layer_are_not_symmetry():
    kinds = {"conv1.weight": "weight", "bn1.weight": "norm_scale", "bn1.bias": "norm_shift", "fc.weight": "weight"}
    tensors = ("conv1.weight", "bn1.weight", "bn1.bias", "fc.weight")
    healthy = weight_stds({"conv1.weight": 0.1, "bn1.weight": 0.0, "bn1.bias": 0.0, "fc.weight": 0.0})
    assert d.symmetric_weights(healthy, ctx(kinds=kinds, tensors=tensors)) is None
    planted = weight_stds({"conv1.weight": 0.0, "bn1.weight": 0.0, "fc.weight": 0.05})
    found = d.symmetric_weights(planted, ctx(kinds=kinds, tensors=tensors))
    assert found and "conv1.weight (weights)" in found.evidence


def test_a_model_with_norm_layers_has_no_layer_by_layer_gradient_ladder():
    norms = grad_norms([1e-5, 1e-4, 1e-3])
    assert d.vanishing_gradients(norms, ctx()) is not None
    norms["grad_norm/bn1.weight"] = series([1e-3] * 10)
    assert d.vanishing_gradients(norms, ctx(kinds={"bn1.weight": "norm_scale"})) is None


def test_gains_biases_and_embeddings_do_not_count_for_the_learning_rate_rules():
    kinds = {"ln.weight": "norm_scale", "wte.weight": "embedding", "fc.weight": "weight"}
    high = {
        "update_ratio/ln.weight": series([0.5] * 300),
        "update_ratio/wte.weight": series([0.5] * 300),
        "update_ratio/fc.weight": series([1e-3] * 300),
    }
    assert d.learning_rate_too_high(high, ctx(kinds=kinds)) is None


def test_a_low_rate_is_read_on_the_median_weight_matrix():
    loss = {"loss": falling_loss(200, end=2.2)}
    ratios = {f"update_ratio/layer{i}.weight": series([1e-5] * 20) for i in range(5)}
    ratios["update_ratio/fc.weight"] = series([3e-4] * 20)
    assert d.learning_rate_too_low({**ratios, **loss}, ctx()) is not None
    ratios["update_ratio/fc.weight"] = series([2e-3] * 20)  # one layer at a healthy rate: not the rate
    assert d.learning_rate_too_low({**ratios, **loss}, ctx()) is None


def test_a_frozen_layer_between_learning_ones_is_named_but_not_a_frozen_backbone():
    tensors = ("patches.weight", "encoder.0.weight", "encoder.0.bias", "encoder.1.weight", "head.weight")
    hole = d.frozen_layer({}, ctx(tensors=tensors, frozen=("encoder.0.weight", "encoder.0.bias")))
    assert hole and hole.evidence.startswith("encoder.0.weight (weights) between patches.weight and head.weight")
    backbone = ("patches.weight", "encoder.0.weight", "encoder.0.bias", "encoder.1.weight")
    assert d.frozen_layer({}, ctx(tensors=tensors, frozen=backbone)) is None  # fine-tuning the head
    assert d.frozen_layer({}, ctx(tensors=tensors)) is None


def test_a_loss_that_jumps_to_four_times_its_start_is_a_rate_too_high():
    losses = [1.44, 3.3, 15.9] + [1.3] * 50
    found = d.learning_rate_too_high({"loss": series(losses)}, ctx())
    assert found and "jumped from 1.44 to 15.9 at step 2" in found.evidence and found.step == 2
    assert d.learning_rate_too_high({"loss": series([1.44, 3.0, 2.0] + [1.0] * 50)}, ctx()) is None


def test_accuracies_logged_every_step_are_read_at_each_validation():
    train = series(np.linspace(0.3, 0.5, 100))  # every step, low
    val = series([0.30, 0.33, 0.36, 0.38, 0.40], start=19, every=20)  # once an epoch
    found = d.underfitting({"train_acc": train, "val_acc": val}, ctx(status="succeeded"))
    assert found and found.numbers["train_acc"] == pytest.approx(0.4192, abs=1e-3)  # at the validation steps


def test_a_validation_loss_that_starts_above_the_no_signal_level_and_climbs_is_stuck():
    # shuffled training labels: the model fits noise, grows confident, and validates ever worse
    val_loss = {"val_loss": series([2.47, 2.6, 2.8, 2.95], start=15, every=16)}
    found = d.validation_loss_stuck({**val_loss, "loss": falling_loss(64, end=1.3)}, ctx())
    assert found and "never went below 2.47" in found.evidence and "no signal: 2.3" in found.evidence
    learning = {"val_loss": series([2.47, 2.1, 1.8, 1.5], start=15, every=16)}
    assert d.validation_loss_stuck({**learning, "loss": falling_loss(64, end=1.3)}, ctx()) is None


def test_gradients_carried_over_steps_are_named_by_their_cause_not_as_a_rate_too_high():
    carried = {"carried_gradient": series([0.0] + [0.7] * 12, start=5, every=5)}
    ratios = {f"update_ratio/layer{i}.weight": series([5e-2] * 40, every=5) for i in range(4)}
    run = {**carried, **ratios, "loss": falling_loss(n=101, end=2.0)}
    found = {f.rule: f for f in d.diagnose(run, ctx())}
    assert found["gradients_accumulate"].severity == "error" and found["gradients_accumulate"].step in (5, 10)
    assert (
        "70% of the gradient the optimizer stepped with was left from earlier steps"
        in found["gradients_accumulate"].evidence
    )
    assert "zero_grad()" in found["gradients_accumulate"].advice
    assert "lr_too_high" not in found  # a bystander of the summed gradients
    # zeroed gradients leave nothing over but rounding; a rate too high is then named
    zeroed = {**run, "carried_gradient": series([1e-7] * 13, start=5, every=5)}
    rules = [f.rule for f in d.diagnose(zeroed, ctx())]
    assert "lr_too_high" in rules and "gradients_accumulate" not in rules


def test_an_evaluation_in_training_mode_is_named():
    run = {"loss": falling_loss(), "eval_in_train_mode": (np.array([19, 39, 59]), np.array([2.0, 2.0, 2.0]))}
    finding = d.evaluated_in_train_mode(run, ctx())
    assert finding is not None and finding.step == 19 and "6 forward passes without gradients" in finding.evidence
    assert "model.eval()" in finding.advice
    assert d.evaluated_in_train_mode({"loss": falling_loss()}, ctx()) is None


def test_every_rule_says_what_it_reads_and_a_run_missing_it_is_told_what_to_log():
    import re
    from pathlib import Path

    from trainer.diagnosis import RULE_NEEDS, waiting_rules

    source = "".join(path.read_text() for path in Path(d.__file__).parent.glob("*.py"))
    rules = set(re.findall(r'Finding\(\s*"([a-z_]+)"', source)) - {"check", "gradient_check", "first_layer_noise"}
    assert rules == set(RULE_NEEDS)

    everything = ["loss", "train_acc", "val_acc", "val_loss", "update_ratio/fc1.weight", "grad_norm/fc1.weight"]
    everything += ["weight_std/fc1.weight", "dead_fraction/act1"]
    assert waiting_rules(everything, ctx(classes=10)) == []
    # a GELU model: activations measured, no ReLU to count, nothing waits on them
    gelu = [key for key in everything if not key.startswith("dead_")] + ["activation_std/mlp.1"]
    assert waiting_rules(gelu, ctx(classes=10)) == []
    # a script that logs only its loss, watch() not called and no classes given
    waiting = {group["needs"]: group["rules"] for group in waiting_rules(["loss"], ctx(classes=None))}
    assert waiting["train_acc and val_acc"] == ["overfitting", "underfitting"]
    assert waiting["update-to-weight ratios"] == ["lr_too_high", "lr_too_low", "frozen_layer"]
    assert waiting["activation histograms"] == ["dead_relus", "saturated_units", "collapsed_activations"]
    assert waiting["the loss function and the number of classes"] == ["initial_loss"]
    assert "adagrad_decayed" not in str(waiting)  # a rule of Adagrad's only
    assert "gradients_accumulate" not in str(waiting)  # the worker's trainer zeroes the gradients itself
    assert waiting_rules(everything, ctx(classes=10, own_loop=True))[0]["rules"] == ["gradients_accumulate"]
    adagrad = waiting_rules(["loss"], ctx(classes=None, optimizer="adagrad"))
    assert "adagrad_decayed" in [rule for group in adagrad for rule in group["rules"]]


def test_divergence_reads_the_histograms_of_tensors_that_held_nan_or_infinite_values():
    held = d.histogram_series(
        [
            ("activation/relu", 200, 0.5, 0),
            ("activation/relu", 235, float("nan"), 8192),
            ("weight/fc1.weight", 240, float("nan"), 12),
        ]
    )
    assert list(held["nonfinite/activation/relu"][0]) == [235] and "activation_std/relu" in held
    loss = series([2.3] * 238 + [float("nan")] * 2)
    found = d.divergence({"loss": loss, **held}, ctx())
    assert found.step == 235 and found.evidence == (
        "the loss became nan at step 238 (loss series); activation/relu held 8,192 NaN or infinite values"
        " at step 235 (histograms)"
    )
    assert found.series == ["loss"]  # the chart it points at; the histograms are on the layers panel
    # activations gone bad while the loss still reads: named all the same
    alone = d.divergence({"loss": series([2.3] * 240), **held}, ctx())
    assert alone.step == 235 and alone.evidence.startswith("activation/relu held 8,192")
