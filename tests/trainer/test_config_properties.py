"""Random configs thrown at the validator: it accepts a valid config or raises
ConfigError naming the fields, never anything else."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer.config import DATA_SETTINGS, OPTIMIZER_SETTINGS, SCHEDULE_SETTINGS, ConfigError, RunConfig

# scalar values of every JSON type, with the awkward ones: NaN, infinities, huge numbers, empty text
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([0, 1, -1, 0.5, 1e-3, 10**9, 2**31, "sgd", "adam", "relu", "digits", "step", "epoch"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)

known_section_keys = {
    "model": [
        "kind",
        "hidden",
        "channels",
        "kernel_size",
        "activation",
        "maxout_pieces",
        "leaky_slope",
        "init",
        "init_std",
        "init_value",
        "dropout",
        "batch_norm",
    ],
    "data": [
        "name",
        "path",
        "samples",
        "classes",
        "features",
        "noise",
        "spread",
        "val_fraction",
        "standardize",
        "train_limit",
    ],
    "optimizer": [
        "name",
        "lr",
        "momentum",
        "weight_decay",
        "decoupled_weight_decay",
        "betas",
        "eps",
        "amsgrad",
        "decay",
        "centered",
        "rho",
    ],
    "schedule": [
        "name",
        "interval",
        "warmup_steps",
        "gamma",
        "step_size",
        "milestones",
        "power",
        "max_iter",
        "tau",
        "t_max",
        "eta_min",
        "factor",
        "patience",
        "threshold",
    ],
    "instrument": ["ratio_every", "histogram_every", "histogram_bins", "first_layer_images"],
    "checks": ["h", "dims_per_tensor", "examples", "warmup_steps"],
}
names = {"optimizer": list(OPTIMIZER_SETTINGS), "schedule": list(SCHEDULE_SETTINGS), "data": list(DATA_SETTINGS)}


@st.composite
def sections(draw, section):
    keys = known_section_keys[section] + ["unknown_key"]
    chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=5))
    body = {key: draw(json_values) for key in chosen}
    if section in names and draw(st.booleans()):
        body["name"] = draw(st.sampled_from(names[section]))  # often a real choice, so deeper checks run
    return body


@st.composite
def configs(draw):
    top = {}
    for section in known_section_keys:
        if draw(st.booleans()):
            top[section] = draw(st.one_of(sections(section), json_values))
    for key in draw(
        st.lists(
            st.sampled_from(
                ["batch_size", "epochs", "seed", "device", "loss", "precision", "job", "preflight", "bogus"]
            ),
            unique=True,
            max_size=4,
        )
    ):
        top[key] = draw(json_values)
    return draw(st.one_of(st.just(top), json_values))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_the_validator_accepts_or_names_the_bad_fields_and_never_fails_otherwise(raw):
    try:
        config = RunConfig.from_dict(raw)
    except ConfigError as error:
        assert error.errors and all(isinstance(k, str) and isinstance(v, str) and v for k, v in error.errors.items())
        return
    resolved = config.to_dict()
    assert RunConfig.from_dict(resolved) == config  # what is stored is valid again
    assert math.isfinite(config.optimizer.lr) and config.optimizer.lr > 0
