"""An ensemble of trainings: member seeds and the equal-share combined draws."""

import numpy as np
import pytest

from cinnflow.errors import ConfigError
from cinnflow.flows import ConditionalINN
from cinnflow.sampling import member_seed, sample_ensemble, sample_posterior


def _model(seed):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, (200, 1)).astype(np.float32)
    x = np.concatenate([c, c**2], axis=1) + rng.normal(size=(200, 2))
    model = ConditionalINN(
        ["other", "other"],
        ["other"],
        n_blocks=2,
        subnet_hidden=[8],
        condition_hidden=[8],
        condition_dim=2,
        clamp=2.0,
        seed=seed,
    )
    model.adapt(x.astype(np.float32), c)
    return model, c[:10]


def test_member_seeds_keep_the_master_seed_for_member_zero():
    assert member_seed(7, 0) == 7
    assert member_seed(7, "2") == 2007
    with pytest.raises(ConfigError, match="-1"):
        member_seed(7, -1)


def test_ensemble_draws_are_equal_shares_of_each_member():
    first, c = _model(1)
    second, _ = _model(2)
    single = sample_ensemble([first], c, n_draws=6, batch_size=4, seed=9)
    np.testing.assert_array_equal(
        single, sample_posterior(first, c, n_draws=6, batch_size=4, seed=9)
    )
    both = sample_ensemble([first, second], c, n_draws=6, batch_size=4, seed=9)
    assert both.shape == (10, 6, 2)
    share0 = sample_posterior(first, c, n_draws=3, batch_size=4, seed=[9, 0])
    share1 = sample_posterior(second, c, n_draws=3, batch_size=4, seed=[9, 1])
    np.testing.assert_array_equal(both[:, :3], share0)
    np.testing.assert_array_equal(both[:, 3:], share1)
    assert not np.allclose(share0, share1)
    with pytest.raises(ConfigError, match="n_draws = 5 is not a multiple"):
        sample_ensemble([first, second], c, n_draws=5, batch_size=4, seed=9)
