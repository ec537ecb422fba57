"""nequip-train on the example configs: the MLP and KAN-readout Allegro rows learn the EMT Ag data."""

import pytest
from ase.io import write

from kan_mlip.data import make_ag_data
from kan_mlip.evaluation import errors, load_checkpoint_model, predict
from kan_mlip.models import ScalarKAN
from kan_mlip.training import read_val_metrics, run_nequip_train


@pytest.fixture(scope="module")
def ag_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ag.extxyz"
    write(path, make_ag_data(n_frames=60, seed=0, equilibration_steps=100, progress=False), format="extxyz")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config", ["allegro_mlp", "allegro_kan_readout"])
def test_short_training_lowers_validation_force_mae(config, ag_data, tmp_path):
    run = run_nequip_train(config, tmp_path / config, [f"data_path={ag_data}", "max_epochs=3",
                                                       "trainer.enable_progress_bar=false"], quiet=True)
    val = read_val_metrics(run)
    before, after = val[0]["forces_mae"], val[-1]["forces_mae"]  # run: [val, train, val]
    assert after < 0.7 * before, (config, before, after)

    # the checkpoint reloads into the same architecture and reproduces the logged validation error scale
    model = load_checkpoint_model(run / "best.ckpt")
    assert any(isinstance(m, ScalarKAN) for m in model.modules()) == (config == "allegro_kan_readout")
    from ase.io import read

    frames = read(ag_data, index=":10")
    err = errors(frames, predict(model, frames))
    assert err["force_mae_meV_per_A"] < 1e3 * before
