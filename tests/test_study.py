"""kan-mlip study: same budget for every configuration, report recomputed from the saved models."""

import json

import numpy as np
import pytest
import yaml
from ase.io import write

from kan_mlip.cli import main
from kan_mlip.data import make_ag_data
from kan_mlip.evaluation import errors, load_checkpoint_model, predict
from kan_mlip.study import read_frames


@pytest.mark.slow
def test_study_reports_every_configuration_and_survives_divergence(tmp_path, capsys):
    write(tmp_path / "ag.extxyz", make_ag_data(n_frames=40, seed=0, equilibration_steps=50, progress=False), format="extxyz")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "data": "ag.extxyz", "validation_fraction": 0.2, "seeds": [1], "max_epochs": 2,
        "configs": ["allegro_mlp", "allegro_kan_readout",
                    {"name": "diverging", "config": "allegro_mlp", "overrides": ["training_module.optimizer.lr=1e12"]}],
    }))
    out = tmp_path / "report"
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out)]) == 0
    assert "epoch 2/2 trained" in capsys.readouterr().out  # progress while it trains
    result = json.loads((out / "study.json").read_text())
    status = {r["config"]: r["status"] for r in result["runs"]}
    assert status == {"allegro_mlp": "ok", "allegro_kan_readout": "ok", "diverging": "diverged"}
    report = (out / "report.md").read_text()
    assert "allegro_kan_readout" in report and "diverged" in report and "force MAE / its MLP" in report
    assert (out / "errors.png").stat().st_size > 5000 and (out / "parity_best.png").stat().st_size > 5000

    # the report's numbers are what the saved model gives on the held-out frames
    row = next(r for r in result["runs"] if r["config"] == "allegro_kan_readout")
    from ase.io import read

    pool = read(out / "data" / "pool.extxyz", index=":")
    held_out = [a for a in read_frames(tmp_path / "ag.extxyz")
                if not any(np.array_equal(a.positions, b.positions) for b in pool)]
    assert len(held_out) == 8
    again = errors(held_out, predict(load_checkpoint_model(row["checkpoint"]), held_out))
    assert abs(again["force_mae_meV_per_A"] - row["force_mae_meV_per_A"]) < 1e-9
    assert 0 < row["train_force_mae_meV_per_A"] < 1e4 and "force MAE train" in report

    # an interrupted study resumes: finished runs are reused, not trained again
    (out / "runs" / "allegro_kan_readout_seed1" / "best.ckpt").unlink()
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out)]) == 0
    again = {r["config"]: r for r in json.loads((out / "study.json").read_text())["runs"]}
    assert again["allegro_mlp"] == next(r for r in result["runs"] if r["config"] == "allegro_mlp")
    assert again["diverging"]["status"] == "diverged" and again["allegro_kan_readout"]["status"] == "ok"
    assert (out / "runs" / "allegro_kan_readout_seed1" / "best.ckpt").is_file()  # retrained


def test_study_file_errors(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("name: x\nconfigs: [allegro_mlp]\n")
    assert main(["study", str(tmp_path / "s.yaml")]) == 2
    assert "needs 'data'" in capsys.readouterr().err
    (tmp_path / "s.yaml").write_text("name: x\ndata: nope.extxyz\nconfigs: [allegro_mlp]\n")
    assert main(["study", str(tmp_path / "s.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    write(tmp_path / "d.extxyz", make_ag_data(n_frames=4, seed=0, equilibration_steps=5, progress=False), format="extxyz")
    (tmp_path / "s.yaml").write_text("name: x\ndata: d.extxyz\nconfigs: [allegro_mlp]\nvalidation_frames: 2\npool_frames: 3\n")
    assert main(["study", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "r")]) == 2
    assert "5 > 4 frames" in capsys.readouterr().err


def test_blow_up_flags_runs_that_left_the_basin():
    from kan_mlip.study.folder import BLOW_UP, blow_up

    learning = [{"forces_mae": 0.4}, {"forces_mae": 0.1}, {"forces_mae": 0.02}]
    assert blow_up(learning) == {}
    spike = [{"forces_mae": 0.4}, {"forces_mae": 0.4 * BLOW_UP * 1.01}, {"forces_mae": 0.3}]
    flagged = blow_up(spike)
    assert flagged["status"] == "unstable" and "rose from 400.0" in flagged["error"]


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, capsys):
    """A run stopped after 2 of 4 epochs (its last.ckpt in the study folder, no row) continues from epoch 3
    and ends where the same run without interruption ends, within run-to-run noise."""
    from kan_mlip.training import learning_curve, read_val_metrics, run_nequip_train

    write(tmp_path / "ag.extxyz", make_ag_data(n_frames=40, seed=0, equilibration_steps=50, progress=False), format="extxyz")
    spec = {"name": "tiny", "data": "ag.extxyz", "validation_fraction": 0.2, "seeds": [1], "max_epochs": 4,
            "configs": ["allegro_mlp"]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    whole = tmp_path / "whole"
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(whole)]) == 0

    # the interrupted run: the same command line as the study's, stopped after epoch 2
    pieces = tmp_path / "pieces"
    run = pieces / "runs" / "allegro_mlp_seed1"
    from kan_mlip.study import load_study, split

    pool, _, _ = split(load_study(tmp_path / "study.yaml"), pieces / "data")
    run_nequip_train("allegro_mlp", run, [f"data_path={pool}", "max_epochs=2", "seed=1",
                                          "trainer.enable_progress_bar=false"], quiet=True)
    first, logged = learning_curve(run), read_val_metrics(run)
    assert len(first) == 2 and not (pieces / "study.json").exists()
    capsys.readouterr()
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(pieces)]) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 2" in out and "epoch 3/4 trained" in out and "epoch 1/4 trained" not in out

    rows = {d.name: json.loads((d / "study.json").read_text())["runs"][0] for d in (whole, pieces)}
    resumed, uninterrupted = rows["pieces"], rows["whole"]
    assert resumed["epochs"] == uninterrupted["epochs"] == 4 and not resumed["stopped_early"]
    # the first two epochs are the interrupted run's own, time included; the clock went on from there
    assert [p["forces_mae"] for p in resumed["curve"][:2]] == [p["forces_mae"] for p in first]
    elapsed = [p["elapsed_seconds"] for p in resumed["curve"]]
    assert elapsed == sorted(elapsed) and elapsed[1] == first[1]["elapsed_seconds"]
    # the logger's metrics of the first piece (the untrained validation, the first epochs) are kept
    again = read_val_metrics(run)
    assert again[: len(logged)] == logged and len(again) > len(logged) and logged[0]["step"] == 0
    # epochs 3-4 went on from the checkpoint: far below the untrained error, as the uninterrupted run
    ratio = resumed["force_mae_meV_per_A"] / uninterrupted["force_mae_meV_per_A"]
    assert 0.7 < ratio < 1.4, ratio
    assert (pieces / "curves_allegro_mlp.png").stat().st_size > 5000


def test_energy_references_fit_compositions():
    """Least-squares per-element references: exact when compositions determine them; for one fixed
    composition (HfO2 frames) the minimum-norm split, which keeps every frame's sum."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from kan_mlip.study import energy_references

    def frame(symbols, energy):
        atoms = Atoms(symbols, positions=np.zeros((len(symbols), 3)))
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
        return atoms

    e = {"Hf": -9.5, "O": -4.25}
    mixed = [frame(s, sum(e[z] for z in s) + noise) for s, noise in
             ((["Hf", "O", "O"], 0.0), (["Hf", "Hf", "O"], 0.0), (["O"] * 3, 0.0), (["Hf"] * 4, 0.0))]
    assert energy_references(mixed) == pytest.approx(e, abs=1e-10)

    fixed = [frame(["Hf"] * 32 + ["O"] * 64, -936.0 + d) for d in (-1.0, 0.5, 2.0)]
    refs = energy_references(fixed)
    mean = np.mean([a.get_potential_energy() for a in fixed])
    assert 32 * refs["Hf"] + 64 * refs["O"] == pytest.approx(mean, abs=1e-9)
    assert refs["O"] == pytest.approx(2 * refs["Hf"], abs=1e-12)  # minimum norm along (32, 64)


def test_time_to_reach_a_validation_error():
    from kan_mlip.study import time_to_reach

    curve = [{"epoch": 1, "elapsed_seconds": 10.0, "forces_mae": 0.5}, {"epoch": 2, "elapsed_seconds": 21.0, "forces_mae": 0.2},
             {"epoch": 3, "elapsed_seconds": 33.0, "forces_mae": 0.25}]
    assert time_to_reach(curve, 0.2) == (2, 21.0) and time_to_reach(curve, 0.5) == (1, 10.0)
    assert time_to_reach(curve, 0.1) is None


def test_study_rejects_unknown_energy_references(tmp_path, capsys):
    write(tmp_path / "d.extxyz", make_ag_data(n_frames=4, seed=0, equilibration_steps=5, progress=False), format="extxyz")
    (tmp_path / "s.yaml").write_text("name: x\ndata: d.extxyz\nconfigs: [allegro_mlp]\nenergy_references: isolated\n")
    assert main(["study", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "r")]) == 2
    assert "energy_references must be one of" in capsys.readouterr().err


@pytest.mark.slow
def test_runs_trained_alone_are_collected_and_a_plateau_stops_a_run(tmp_path, capsys, monkeypatch):
    """--only trains one run (its result.json, no report); the study without --only reuses it. The HfO2
    rows' stopping rule ends a run that stops improving before max_epochs; per-element references reach
    the model; the learning rate is in the curve."""
    write(tmp_path / "ag.extxyz", make_ag_data(n_frames=30, seed=0, equilibration_steps=50, progress=False), format="extxyz")
    stalled = ["chemical_symbols=[Ag]", "training_module.optimizer.lr=1e-30", "plateau_patience=1",
               "trainer.callbacks.2.min_delta=1e-6"]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "data": "ag.extxyz", "validation_frames": 6, "seeds": [1], "max_epochs": 4,
        "energy_references": "least_squares", "md_cost": {"rounds": 2, "steps": 3, "warmup": 1},
        "configs": ["allegro_mlp", {"name": "stalled", "config": "hfo2_allegro_mlp", "overrides": stalled}]}))
    out = tmp_path / "report"
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out), "--only", "stalled", "1"]) == 0
    assert "Ag " in capsys.readouterr().out  # the fitted reference is logged
    run = out / "runs" / "stalled_seed1"
    row = json.loads((run / "result.json").read_text())
    assert row["status"] == "ok" and row["stopped_early"] and row["epochs"] == 2, row["epochs"]
    assert [p["lr"] for p in row["curve"]] == [1e-30, 1e-30]
    assert not (out / "study.json").exists() and not (out / "report.md").exists()
    shifts = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["training_module"]["model"]["per_type_energy_shifts"]
    from kan_mlip.study import energy_references

    assert shifts == pytest.approx(energy_references(read_frames(out / "data" / "pool.extxyz")), abs=1e-12)

    # --report: the interim report of the finished run, naming the other; nothing trained, no MD cost, no
    # pool written (the held-out frames are drawn again in memory)
    (out / "data" / "pool.extxyz").unlink()
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out), "--report"]) == 0
    assert not (out / "data" / "pool.extxyz").exists()
    report = (out / "report.md").read_text()
    assert "| stalled |" in report and "| allegro_mlp |" not in report and "MD cost" not in report
    assert "Interim report: 1 of 2 runs finished" in report
    assert "Not in this report: 1 runs not finished when it was written: allegro_mlp seed 1 (not started, epoch 0/4)." in report
    assert not (out / "runs" / "allegro_mlp_seed1").exists() and (out / "curves_stalled.png").is_file()
    assert [r["config"] for r in json.loads((out / "study.json").read_text())["runs"]] == ["stalled"]
    capsys.readouterr()

    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out), "--only", "nope", "1"]) == 2
    assert "not a run of study tiny" in capsys.readouterr().err
    import kan_mlip.study.train as study_train

    written, write_report = [], study_train.write_report

    def recording_write_report(spec, rows, val, outdir, plots=True, unfinished=()):
        written.append(([r["config"] for r in rows], list(unfinished)))
        write_report(spec, rows, val, outdir, plots=plots, unfinished=unfinished)

    monkeypatch.setattr(study_train, "write_report", recording_write_report)
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out)]) == 0
    monkeypatch.undo()
    log = capsys.readouterr().out
    assert "stalled seed 1: already done, reused" in log and "allegro_mlp seed 1: training" in log
    # the report written after each run, in case the call is interrupted, names the runs it has not reached
    assert written == [(["allegro_mlp"], ["stalled seed 1 (not reached yet)"]), (["allegro_mlp", "stalled"], []),
                       (["allegro_mlp", "stalled"], [])]
    rows = {r["config"]: r for r in json.loads((out / "study.json").read_text())["runs"]}
    cost = {name: rows[name].pop("md_cost") for name in rows}
    assert rows["stalled"] == row and rows["allegro_mlp"]["epochs"] == 4 and not rows["allegro_mlp"]["stopped_early"]

    # MD cost: both deployed (each in its training dtype) and timed in turn on a held-out frame
    assert [len(c["ms_per_step"]) for c in cost.values()] == [2, 2] and all(min(c["ms_per_step"]) > 0 for c in cost.values())
    assert cost["allegro_mlp"]["ratio_to_reference"] == 1.0 and cost["stalled"]["reference"] == "allegro_mlp"
    from kan_mlip.compiler import load_deployed

    assert load_deployed(out / "models" / "stalled.pt")[1]["model_dtype"] == "float32"
    report = (out / "report.md").read_text()
    assert "MD cost" in report and "| stalled | 1/1 | 2 |" in report and "seed 1" in report and "Interim" not in report
    median = np.median([p["train_seconds"] for p in row["curve"]])  # each epoch's time in training batches
    assert next(line for line in report.splitlines() if line.startswith("| stalled | 1/1")).endswith(f"| {median:.0f} |")
    assert (out / "accuracy_vs_cost.png").stat().st_size > 5000
    assert (out / "curves_all.png").stat().st_size > 5000  # both configurations' learning curves together

    # --reevaluate: every recorded number recomputed from the saved best.ckpt; a record that differs is found
    (out / "data" / "pool.extxyz").unlink()
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out), "--reevaluate"]) == 0
    assert not (out / "data" / "pool.extxyz").exists()  # trains and writes nothing
    assert "2 runs re-evaluated from their best.ckpt on 6 held-out frames: every number agrees" in capsys.readouterr().out
    row["force_mae_meV_per_A"] *= 1.001
    (run / "result.json").write_text(json.dumps(row))
    assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out), "--reevaluate"]) == 1
    log = capsys.readouterr().out
    assert "stalled seed 1: DIFFER (largest relative difference 1.0e-03)" in log and "allegro_mlp seed 1: agree" in log


@pytest.mark.slow
def test_a_resumed_run_keeps_its_schedule_and_plateau_count(tmp_path, capsys):
    """The HfO2 rows' learning-rate schedule and plateau stop survive an interruption: a run that cannot
    improve (lr 1e-30) halves its lr after every stagnant epoch and stops after 3 of them, at epoch 4,
    whether it ran in one piece or was stopped after epoch 2 and resumed from last.ckpt."""
    import shutil

    import torch

    from kan_mlip.study import load_study, split
    from kan_mlip.training import run_nequip_train

    write(tmp_path / "ag.extxyz", make_ag_data(n_frames=20, seed=0, equilibration_steps=50, progress=False), format="extxyz")
    stalled = ["chemical_symbols=[Ag]", "training_module.optimizer.lr=1e-30", "plateau_patience=3", "lr_patience=0",
               "trainer.callbacks.2.min_delta=1e-6"]
    spec = {"name": "tiny", "data": "ag.extxyz", "validation_frames": 4, "seeds": [1], "max_epochs": 8,
            "configs": [{"name": "stalled", "config": "hfo2_allegro_mlp", "overrides": stalled}]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    curves = {}
    for piece in ("whole", "pieces"):
        out = tmp_path / piece
        if piece == "pieces":  # the study's own command line, stopped after epoch 2, in a folder since moved
            pool, _, _ = split(load_study(tmp_path / "study.yaml"), out / "data")
            run_nequip_train("hfo2_allegro_mlp", tmp_path / "elsewhere" / "stalled_seed1",
                             [f"data_path={pool}", "max_epochs=2", "seed=1", "trainer.enable_progress_bar=false", *stalled],
                             quiet=True)
            shutil.move(tmp_path / "elsewhere", out / "runs")
        assert main(["study", str(tmp_path / "study.yaml"), "-o", str(out)]) == 0
        row = json.loads((out / "study.json").read_text())["runs"][0]
        assert row["status"] == "ok" and row["stopped_early"], row
        curves[piece] = row["curve"]
        # no epoch was better than the first: best.ckpt is still epoch 1's, though the run was moved between pieces
        assert torch.load(str(out / "runs" / "stalled_seed1" / "best.ckpt"), weights_only=False)["epoch"] == 0
        assert not list((out / "runs" / "stalled_seed1").glob("best-v*.ckpt"))  # nor saved a second "best"
    log = capsys.readouterr().out
    assert "resuming after epoch 2" in log and "the run was moved" in log, log
    for curve in curves.values():
        assert [p["lr"] for p in curve] == pytest.approx([1e-30, 1e-30, 5e-31, 2.5e-31], rel=1e-12)


def test_status_reads_where_every_run_stands(tmp_path, capsys):
    """--status trains nothing: an unfinished run shows its epochs, best validation force MAE, lr and plateau
    count (from last.ckpt's EarlyStopping state), a finished one its state, the rest 'not started'."""
    import torch

    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "tiny", "data": "nope.extxyz", "seeds": [1, 2], "max_epochs": 9,
                                                     "configs": ["allegro_mlp", "allegro_kan_readout"]}))
    (tmp_path / "nope.extxyz").touch()  # not read
    curve = {"elapsed_seconds": [1800.0, 3600.0, 5400.0],
             "validation": [{"forces_mae": 0.3, "lr": 0.01}, {"forces_mae": 0.2, "lr": 0.01}, {"forces_mae": 0.25, "lr": 0.005}]}
    run = tmp_path / "out" / "runs" / "allegro_mlp_seed2"
    run.mkdir(parents=True)
    (run / "epoch_times.json").write_text(json.dumps(curve))
    torch.save({"epoch": 2, "callbacks": {"EarlyStopping{'monitor': 'val0_epoch/weighted_sum', 'mode': 'min'}":
                                          {"wait_count": 1, "patience": 15}}}, run / "last.ckpt")
    done = tmp_path / "out" / "runs" / "allegro_kan_readout_seed1"
    done.mkdir(parents=True)
    (done / "best.ckpt").touch()  # a finished run is one whose checkpoint is there
    (done / "result.json").write_text(json.dumps({"config": "allegro_kan_readout", "seed": 1, "status": "ok", "stopped_early": True,
                                                  "checkpoint": str(done / "best.ckpt"),
                                                  "curve": [{"forces_mae": 0.1, "elapsed_seconds": 7200.0, "lr": 1e-3}]}))
    assert main(["study", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "out"), "--status"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "out" / "data").exists()  # nothing split, nothing trained
    lines = {line[:44].strip(): line[44:].split() for line in out.splitlines()[2:6]}
    assert lines["allegro_mlp seed 1"] == ["not", "started", "0/9", "-", "-", "-", "-"]
    assert lines["allegro_mlp seed 2"] == ["unfinished", "3/9", "200.0", "meV/Å", "(ep", "2)", "0.005", "1/15", "1.50"]
    assert lines["allegro_kan_readout seed 1"] == ["finished", "*", "1/9", "100.0", "meV/Å", "(ep", "1)", "0.001", "-", "2.00"]
    assert "2 not started" in out.splitlines()[0]
    # two runs not started at the finished run's 2.00 h each, and 0.50 h more for the unfinished one
    assert "About 4.5 run-hours of training left" in out and "(2.00-2.00 h)" in out
    with pytest.raises(SystemExit):  # one thing at a time instead of training
        main(["study", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "out"), "--status", "--report"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_finished_run_is_reused_from_a_moved_or_cloned_study_folder(tmp_path):
    """A row records its checkpoint's absolute path; in a clone of the study folder elsewhere the run is still
    finished (not trained again), and its checkpoint is the clone's."""
    from kan_mlip.study import finished_runs

    done = tmp_path / "clone" / "runs" / "allegro_mlp_seed1"
    done.mkdir(parents=True)
    (done / "best.ckpt").touch()
    (done / "result.json").write_text(json.dumps({
        "config": "allegro_mlp", "seed": 1, "status": "ok",
        "checkpoint": str(tmp_path / "original" / "runs" / "allegro_mlp_seed1" / "best.ckpt")}))
    assert finished_runs(tmp_path / "clone")[("allegro_mlp", 1)]["checkpoint"] == str(done / "best.ckpt")
    (done / "best.ckpt").unlink()  # no checkpoint anywhere: not finished
    assert ("allegro_mlp", 1) not in finished_runs(tmp_path / "clone")


def test_report_gives_the_paper_layout_beside_the_papers_values(tmp_path):
    """Configs entries with label and paper values: a table in eV units, our ratio to the MLP beside the paper's."""
    from kan_mlip.study import load_study, write_report

    (tmp_path / "d.extxyz").touch()
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "name": "t", "data": "d.extxyz", "seeds": [1, 2], "paper_table": "Table 5",
        "configs": [{"config": "allegro_mlp", "label": "Allegro", "paper": {"energy_mae": 0.164, "force_mae": 0.074}},
                    {"config": "allegro_kan_readout", "label": "Allegro KAN output",
                     "paper": {"energy_mae": 0.104, "force_mae": 0.054}},
                    "allegro_kan_all_bspline"]}))
    spec = load_study(tmp_path / "s.yaml")
    force = {("allegro_mlp", 1): 100.0, ("allegro_mlp", 2): 120.0, ("allegro_kan_readout", 1): 90.0,
             ("allegro_kan_readout", 2): 96.0, ("allegro_kan_all_bspline", 1): 200.0, ("allegro_kan_all_bspline", 2): 220.0}
    energy = {"allegro_mlp": 2.0, "allegro_kan_readout": 1.5, "allegro_kan_all_bspline": 3.0}  # x seed (meV/atom)
    rows = [{"config": c, "seed": s, "status": "ok", "force_mae_meV_per_A": f, "energy_mae_meV_per_atom": energy[c] * s,
             "train_force_mae_meV_per_A": f, "train_energy_mae_meV_per_atom": 1.0, "train_seconds": 10.0, "parameters": 11488}
            for (c, s), f in force.items()]
    from ase import Atoms

    write_report(spec, rows, [Atoms("Hf32O64")] * 5, tmp_path, plots=False)  # held-out frames of 96 atoms
    table = {line.split(" | ")[0].strip("| "): [c.strip() for c in line.split("|")[2:-1]]
             for line in (tmp_path / "report.md").read_text().splitlines()
             if line.startswith("| Allegro") or line.startswith("| allegro_kan_all")}
    # energy 2 and 4 meV/atom over the seeds: 0.192 and 0.384 eV per 96-atom frame
    assert table["Allegro"] == ["0.00300 ± 0.00141", "0.288 ± 0.136", "0.1100 ± 0.0141", "11,488", "-", "0.164", "0.074",
                                "1.000", "1.000", "1.000", "1.000"]
    assert table["Allegro KAN output"][2:3] + table["Allegro KAN output"][5:] == [
        "0.0930 ± 0.0042", "0.104", "0.054", "0.845", "0.730", "0.750", "0.634"]
    assert table["allegro_kan_all_bspline"][-4:] == ["1.909", "-", "1.500", "-"]
    # a row with fewer seeds than its MLP (an interim report, a failed seed) is set against the MLP's runs
    # of the same seeds: seed 1 alone, 90/100 and 1.5/2, not 90 over the MLP's two-seed mean of 110
    write_report(spec, [r for r in rows if (r["config"], r["seed"]) != ("allegro_kan_readout", 2)],
                 [Atoms("Hf32O64")] * 5, tmp_path, plots=False)
    report = (tmp_path / "report.md").read_text().splitlines()
    kan = next(line for line in report if line.startswith("| Allegro KAN output |")).split(" | ")
    assert kan[-4:-3] + kan[-2:-1] == ["0.900", "0.750"]
    assert next(line for line in report if line.startswith("| allegro_kan_readout |")).split(" | ")[3] == "0.900"
    with pytest.raises(ValueError, match="energy_mae"):
        (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "t", "data": "d.extxyz",
                                                         "configs": [{"config": "allegro_mlp", "paper": {"force": 1}}]}))
        load_study(tmp_path / "s.yaml")


def test_report_decides_what_agrees_with_the_paper_from_per_seed_ratios(tmp_path):
    """The verdict: 95% t-interval of the mean per-seed ratio; resolved when it excludes 1, agreeing with the
    paper when it holds the paper's ratio and excludes 1, undecided when it holds both; the KAN is also set
    against the control (control: true)."""
    from ase import Atoms

    from kan_mlip.study import load_study, ratio_interval, write_report

    (tmp_path / "d.extxyz").touch()
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "name": "t", "data": "d.extxyz", "seeds": [1, 2, 3],
        "configs": [{"config": "allegro_mlp", "label": "MLP", "paper": {"energy_mae": 0.164, "force_mae": 0.074}},
                    {"config": "allegro_kan_readout", "label": "KAN", "paper": {"energy_mae": 0.104, "force_mae": 0.054}},
                    {"config": "allegro_mlp_wide", "label": "wide", "control": True}]}))
    spec = load_study(tmp_path / "s.yaml")
    # per seed: KAN/MLP force 0.70 0.72 0.74, energy 0.9 1.0 1.1; wide/MLP force 0.71 0.72 0.73, energy 1 1 1.01
    force = {"allegro_mlp": [100.0, 100.0, 100.0], "allegro_kan_readout": [70.0, 72.0, 74.0],
             "allegro_mlp_wide": [71.0, 72.0, 73.0]}
    energy = {"allegro_mlp": [2.0, 2.0, 2.0], "allegro_kan_readout": [1.8, 2.0, 2.2], "allegro_mlp_wide": [2.0, 2.0, 2.02]}
    rows = [{"config": c, "seed": s, "status": "ok", "force_mae_meV_per_A": force[c][s - 1],
             "energy_mae_meV_per_atom": energy[c][s - 1], "train_force_mae_meV_per_A": 1.0,
             "train_energy_mae_meV_per_atom": 1.0, "train_seconds": 10.0, "parameters": 100} for c in force for s in (1, 2, 3)]
    curves = {"allegro_mlp": [0.3, 0.2, 0.15, 0.1], "allegro_kan_readout": [0.2, 0.1, 0.09, 0.08],
              "allegro_mlp_wide": [0.25, 0.15, 0.1, 0.09]}  # validation force MAE (eV/Å) by epoch: all reach 0.1
    for r in rows:
        r["curve"] = [{"epoch": e, "elapsed_seconds": 60.0 * e + 30, "forces_mae": f} for e, f in enumerate(curves[r["config"]], 1)]
        r["epochs"] = len(r["curve"])
    mean, low, high = ratio_interval([0.70, 0.72, 0.74])
    assert mean == pytest.approx(0.72) and high - mean == pytest.approx(4.302653 * 0.02 / 3 ** 0.5, rel=1e-6)

    def verdicts(runs):  # the closing section's lines of the report of these runs, by what they compare
        write_report(spec, runs, [Atoms("Hf32O64")] * 5, tmp_path, plots=False)
        verdict = (tmp_path / "report.md").read_text().split("## What agrees with the paper and what does not")[1]
        return {line.split(":")[0][2:]: line for line in verdict.splitlines() if line.startswith("- ")}

    said = verdicts(rows)
    assert set(said) == {f"{q}, {a} / {b}" for q in ("Held-out force MAE", "Held-out energy MAE",
                                                     "Epochs to reach a validation force MAE of 100.0 meV/Å")
                         for a, b in (("KAN", "MLP"), ("KAN", "wide"), ("wide", "MLP"))}
    assert said["Epochs to reach a validation force MAE of 100.0 meV/Å, KAN / MLP"].endswith(
        ": 0.500 (per seed 0.500, 0.500, 0.500; 95% interval of the mean 0.500 to 0.500). Lower: resolved.")
    assert ": 0.667 (per seed 0.667" in said["Epochs to reach a validation force MAE of 100.0 meV/Å, KAN / wide"]
    assert "0.720 (per seed 0.700, 0.720, 0.740; 95% interval of the mean 0.670 to 0.770). Lower: resolved. " \
           "The paper's ratio, 0.730, lies inside the interval: agrees" in said["Held-out force MAE, KAN / MLP"]
    assert "No difference resolved with 3 seeds. The paper's ratio, 0.634, lies outside the interval: disagrees" \
           in said["Held-out energy MAE, KAN / MLP"]
    assert "No difference resolved" in said["Held-out force MAE, KAN / wide"]
    assert "Lower: resolved." in said["Held-out force MAE, wide / MLP"] and "paper" not in said["Held-out force MAE, wide / MLP"]
    assert "No difference resolved" in said["Held-out energy MAE, wide / MLP"]  # 1, 1, 1.01
    # two seeds: energy KAN/MLP 0.9, 1.0 gives 0.315 to 1.585, which holds both the paper's 0.634 and 1: undecided
    said2 = verdicts([r for r in rows if r["seed"] < 3])
    assert "95% interval of the mean 0.315 to 1.585). No difference resolved with 2 seeds. The interval holds both " \
           "the paper's ratio, 0.634, and 1 (no effect): too wide to tell; undecided with 2 seeds." \
           in said2["Held-out energy MAE, KAN / MLP"]
    assert "agrees with the paper" in said2["Held-out force MAE, KAN / MLP"]  # 0.593 to 0.847 holds 0.73, not 1
    assert ratio_interval([0.5, 1.5])[1] == 0.0  # t interval -5.35 to 7.35: a ratio is never negative
    # without the MLP's runs the control is no one's MLP: set against once
    write_report(spec, [r for r in rows if r["config"] != "allegro_mlp"], [Atoms("Hf32O64")] * 5, tmp_path, plots=False)
    assert (tmp_path / "report.md").read_text().count("- Held-out force MAE, KAN / wide:") == 1
    # one seed: numbers, no verdict
    write_report(spec, [r for r in rows if r["seed"] == 1], [Atoms("Hf32O64")] * 5, tmp_path, plots=False)
    assert "One seed: no interval, nothing decided." in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="control"):
        (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "t", "data": "d.extxyz",
                                                         "configs": [{"config": "allegro_mlp", "control": "yes"}]}))
        load_study(tmp_path / "s.yaml")


def test_a_run_claimed_by_another_process_is_left_to_it(tmp_path, capsys):
    """Two processes never train one run at once: while a run's claim (flock) is held elsewhere, --only and
    the collecting call leave it alone, --status says 'training', and the report names it as missing."""
    from kan_mlip.study import claim

    write(tmp_path / "ag.extxyz", make_ag_data(n_frames=12, seed=0, equilibration_steps=10, progress=False), format="extxyz")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "tiny", "data": "ag.extxyz", "validation_frames": 4,
                                                     "seeds": [1], "max_epochs": 1, "configs": ["allegro_mlp"]}))
    out, run = tmp_path / "out", tmp_path / "out" / "runs" / "allegro_mlp_seed1"
    with claim(run) as holder:  # the claim is an flock on an open file: a second open in this process conflicts too
        assert holder is None
        with claim(run) as other:
            assert other is not None and other.startswith("pid ")
        assert main(["study", str(tmp_path / "s.yaml"), "-o", str(out), "--only", "allegro_mlp", "1"]) == 0
        assert "being trained by another process" in capsys.readouterr().out
        assert main(["study", str(tmp_path / "s.yaml"), "-o", str(out), "--status"]) == 0
        assert "training" in capsys.readouterr().out.splitlines()[2]
        assert main(["study", str(tmp_path / "s.yaml"), "-o", str(out)]) == 0
        assert ("Not in this report: 1 runs not finished when it was written: allegro_mlp seed 1 (being trained by "
                "another process).") in (out / "report.md").read_text()
        assert not (run / "result.json").exists() and not (run / "epoch_times.json").exists()
    with claim(run) as holder:  # released with the holder's file
        assert holder is None


@pytest.mark.slow
def test_jobs_train_runs_in_parallel_processes_then_collect(tmp_path, capsys):
    """--jobs 2: the two runs train at the same time in their own processes (their training spans overlap),
    their output comes back prefixed by run, and the report is written from both."""
    write(tmp_path / "ag.extxyz", make_ag_data(n_frames=24, seed=0, equilibration_steps=20, progress=False), format="extxyz")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "tiny", "data": "ag.extxyz", "validation_frames": 4, "seeds": [1],
                                                     "max_epochs": 2, "configs": ["allegro_mlp", "allegro_kan_readout"]}))
    out = tmp_path / "out"
    assert main(["study", str(tmp_path / "s.yaml"), "-o", str(out), "--jobs", "2", "--only", "allegro_mlp", "1"]) == 2
    assert main(["study", str(tmp_path / "s.yaml"), "-o", str(out), "--jobs", "2"]) == 0
    log = capsys.readouterr().out
    assert "[allegro_kan_readout 1]     epoch 2/2 trained" in log and "[allegro_mlp 1]     epoch 1/2 trained" in log, log
    assert "already done, reused" in log  # the collecting call trained nothing again
    rows = json.loads((out / "study.json").read_text())["runs"]
    assert sorted((r["config"], r["status"]) for r in rows) == [("allegro_kan_readout", "ok"), ("allegro_mlp", "ok")]
    spans = []
    for r in rows:  # from the start of training to the end of the last epoch, by the files' clocks
        run = out / "runs" / f"{r['config']}_seed1"
        end = (run / "epoch_times.json").stat().st_mtime
        spans.append((end - r["train_seconds"], end))
    assert max(a for a, _ in spans) < min(b for _, b in spans), spans
