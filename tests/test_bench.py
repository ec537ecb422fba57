"""kan-bench: real LAMMPS runs, failed configurations reported without stopping the others; the
Allegro and NequIP families, one MPI rank or several."""

import json

import numpy as np

import pytest

from kan_mlip.bench.cli import main
from kan_mlip.bench.lammps import loop_time, loop_times
from kan_mlip.lmp_plugin import PLUGIN_DIR

pytestmark = pytest.mark.skipif(not (PLUGIN_DIR / "allegro_kan_plugin.so").exists(), reason="plugin not built: make plugin")


def test_bench_runs_lammps_and_reports_a_broken_configuration_as_failed(tmp_path, capsys):
    rc = main(["--configs", "mlp", "no_such_placement", "--replicas", "1", "--steps", "5", "--warmup", "2",
               "--repeats", "2", "-o", str(tmp_path)])
    assert rc == 0
    records = json.loads((tmp_path / "bench.json").read_text())
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["config"] for r in ok] == ["mlp"] and [r["config"] for r in failed] == ["no_such_placement"]
    assert "kan_placement" in failed[0]["error"]
    rec = ok[0]
    assert rec["family"] == "allegro" and rec["procs"] == 1
    assert rec["natoms"] == 71 and rec["steps"] == 5 and rec["ms_per_step"] > 0 and rec["peak_rss_mb"] > 50
    assert rec["model_ms_per_call"] > 0 and rec["torch_version"] and rec["lammps_version"].startswith("LAMMPS")
    # memory: every run's peak kept, the median reported (a process's peak moves more than a readout adds)
    assert len(rec["peak_rss_mb_runs"]) == 2 and rec["peak_rss_mb"] == pytest.approx(np.median(rec["peak_rss_mb_runs"]))
    # the number comes from the LAMMPS log kept beside the results (the faster of the 2 interleaved runs)
    log = (tmp_path / "mlp_71.log").read_text()
    assert abs(loop_time(log)["ms_per_step"] - rec["ms_per_step"]) < 1e-9
    table = (tmp_path / "bench.md").read_text()
    assert "MLP (Allegro)" in table and "failed" in table
    mlp_row = next(line for line in table.splitlines() if line.startswith("| MLP (Allegro)"))
    assert [c.strip() for c in mlp_row.split("|")[1:-1]] == [
        "MLP (Allegro)", f"{rec['ms_per_step']:.2f}", "1.000", f"{rec['peak_rss_mb']:.0f}", "1.000",
        f"{rec['peak_anon_mb']:.0f}", "1.000", f"{rec['model_peak_mb']:.1f}", "1.000"]
    assert 1 < rec["model_peak_mb"] < rec["peak_anon_mb"] < rec["peak_rss_mb"]
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_check_mode_fails_on_a_violated_ratio(tmp_path):
    # an impossible overhead limit must fail the check: the gate can fail
    rc = main(["--configs", "mlp", "--replicas", "1", "--steps", "5", "--warmup", "2", "-o", str(tmp_path),
               "--check", "--max-overhead", "0.01"])
    assert rc == 1


def test_check_ab_run_times_both_models_in_one_lammps_process(tmp_path):
    # the KAN / MLP gate: both models take turns in one LAMMPS run; an impossible limit must fail it
    rc = main(["--configs", "mlp", "kan_readout", "--basis", "bspline", "--replicas", "1", "--steps", "5",
               "--warmup", "2", "-o", str(tmp_path), "--check", "--check-rounds", "3", "--check-steps", "4",
               "--max-kan-ratio", "0.01"])
    assert rc == 1
    check = json.loads((tmp_path / "check.json").read_text())
    (ab,) = check["ab"]
    assert check["basis"] == "bspline" and ab["natoms"] == 71 and ab["rounds"] == 3
    # (over 5 steps LAMMPS / bare model may exceed its limit too, and that failure is listed first)
    assert any("KAN output block / MLP" in f for f in check["failures"])
    # every number is a Loop time of the kept log: per round, warm-up and timed runs of a, then of b
    runs = loop_times((tmp_path / "check_71.log").read_text())
    assert len(runs) == 12 and all(r["atoms"] == 71 for r in runs)
    assert [r["steps"] for r in runs[:4]] == [2, 4, 2, 4]
    assert np.allclose(ab["ms_per_step_a"], [r["ms_per_step"] for r in runs[1::4]])
    assert np.allclose(ab["ratios"], np.array(ab["ms_per_step_b"]) / np.array(ab["ms_per_step_a"]))
    assert ab["median_ratio"] == pytest.approx(np.median(ab["ratios"]))


def test_call_peak_sees_a_materialised_basis_tensor_and_the_fused_ops_do_not_make_one():
    # the call's peak memory is what it holds at once: the reference KAN layer builds the (rows, in, K)
    # basis tensor (here 1260 x 192 x 8 doubles, 14.8 MB), the fused ops must not
    import torch

    from kan_mlip.bench.model_call import call_peak_mb
    from kan_mlip.nn import KANLinear
    from kan_mlip.nn.ops import fused_ops_available, scratch_bytes

    # 8 MB of ones and their sum; the ops' scratch (whatever earlier calls left) counted on top
    ones = call_peak_mb(lambda: torch.ones(2**20, dtype=torch.float64).sum()) - scratch_bytes() / 2**20
    assert 8.0 <= ones < 8.1
    x = torch.randn(1260, 192, dtype=torch.float64, requires_grad=True)

    def force_call_peak(fused: bool) -> float:
        layer = KANLinear(192, 32, basis="bspline", fused=fused).double()
        return call_peak_mb(lambda: torch.autograd.grad(layer(x).sum(), x))

    basis_mb = 1260 * 192 * 8 * 8 / 2**20
    assert force_call_peak(False) > basis_mb
    if fused_ops_available():
        assert force_call_peak(True) < 0.5 * basis_mb


def test_peak_rss_is_lammps_own_not_the_parents(tmp_path):
    # a forked child carries its parent's resident pages until exec, and wait4's ru_maxrss keeps them:
    # the reported peak must be the LAMMPS binary's own, however large this process is
    from kan_mlip.bench.lammps import run_lammps_measured

    (tmp_path / "in.lj").write_text(
        "units lj\nlattice fcc 0.8442\nregion box block 0 4 0 4 0 4\ncreate_box 1 box\ncreate_atoms 1 box\n"
        "mass 1 1.0\nvelocity all create 1.0 1\npair_style lj/cut 2.5\npair_coeff 1 1 1.0 1.0 2.5\n"
        "fix 1 all nve\nrun 20\n")
    alone = run_lammps_measured(tmp_path / "in.lj")
    ballast = np.ones(1024 * 2**20 // 8)  # 1 GiB, touched
    with_ballast = run_lammps_measured(tmp_path / "in.lj")
    assert ballast.sum() > 0 and 5 < alone.peak_rss_mb < 900
    assert abs(with_ballast.peak_rss_mb - alone.peak_rss_mb) < 100, (alone, with_ballast)
    # less the shared libraries' pages: LAMMPS' own memory, a part of its peak
    assert 0 < alone.peak_anon_mb < alone.peak_rss_mb and abs(with_ballast.peak_anon_mb - alone.peak_anon_mb) < 100


def _tiny_nequip():
    from kan_mlip.bench.harness import NequIPSize

    return NequIPSize(num_layers=2, num_features=8, radial_mlp_width=8, readout_width=8)


def test_nequip_rows_run_on_one_and_two_ranks(tmp_path, monkeypatch):
    # a small NequIP (2 layers: a receptive field of 9 Å, more than half the 12.3 x 12.3 x 8.2 Å cell), MLP and
    # KAN output block, on 1 and 2 MPI ranks: every point its own record and log; the 2-rank one against 1 rank
    from kan_mlip.bench import harness
    from kan_mlip.compiler import load_deployed

    monkeypatch.setitem(harness.SIZES, "nequip", _tiny_nequip)
    rc = main(["--family", "nequip", "--basis", "bspline", "--replicas", "1", "--nprocs", "1", "2", "--steps", "3",
               "--warmup", "1", "-o", str(tmp_path)])
    assert rc == 0
    records = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["family"], r["config"], r["procs"], r["status"]) for r in records] == [
        ("nequip", "mlp", 1, "ok"), ("nequip", "mlp", 2, "ok"),
        ("nequip", "kan_readout", 1, "ok"), ("nequip", "kan_readout", 2, "ok")]
    by = {(r["config"], r["procs"]): r for r in records}
    for name, placement in [("mlp", "none"), ("kan_readout", "readout")]:
        one, two = by[name, 1], by[name, 2]
        assert one["placement"] == two["placement"] == placement and one["natoms"] == two["natoms"] == 71
        _, meta = load_deployed(tmp_path / "work" / f"nequip_{name}_bspline_float64.pt")
        assert meta["message_passing_layers"] == 2
        # each number is the Loop time of its kept log, which ran on that many ranks
        for rec, log_name in [(one, f"nequip_{name}_71.log"), (two, f"nequip_{name}_71_2ranks.log")]:
            timing = loop_time((tmp_path / log_name).read_text())
            assert timing["procs"] == rec["procs"] and timing["atoms"] == 71 and timing["steps"] == 3
            assert abs(timing["ms_per_step"] - rec["ms_per_step"]) < 1e-9
            assert rec["atom_steps_per_s"] == pytest.approx(71e3 / rec["ms_per_step"])
            assert rec["lammps_over_model"] == pytest.approx(rec["ms_per_step"] / rec["model_ms_per_call"])
        assert "domain (exchanging) graph" in (tmp_path / f"nequip_{name}_71_2ranks.log").read_text()
        # one rank: memory measured; several: ms/step only, and its cost per atom-step against one rank
        assert one["peak_rss_mb"] > 50 and np.isnan(one["cost_vs_one_rank"])
        assert np.isnan(two["peak_rss_mb"]) and two["peak_rss_mb_runs"] == []
        assert two["threads_per_rank"] == 1 or "OMP_NUM_THREADS" in __import__("os").environ
        assert two["cost_vs_one_rank"] == pytest.approx(two["ms_per_step"] / one["ms_per_step"])
        assert two["model_ms_per_call"] == one["model_ms_per_call"]  # one bare call serves both
    table = (tmp_path / "bench.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.splitlines() if line.startswith("| ") and not line.startswith("| configuration")}
    kan2 = rows["KAN output block (NequIP), 2 ranks"]
    assert kan2[0] == f"{by['kan_readout', 2]['ms_per_step']:.2f}"
    assert kan2[1] == f"{by['kan_readout', 2]['ms_per_step'] / by['mlp', 2]['ms_per_step']:.3f}"  # vs its own MLP
    assert kan2[2:4] == ["-", "-"]  # no peak RSS on 2 ranks
    # the second table: LAMMPS / bare on 1 and 2 ranks, then 2 ranks / 1 rank (rows keyed by the 1-rank label)
    assert rows["MLP (NequIP)"][-3:] == [f"{by['mlp', 1]['lammps_over_model']:.2f}",
                                         f"{by['mlp', 2]['lammps_over_model']:.2f}",
                                         f"{by['mlp', 2]['cost_vs_one_rank']:.2f}"]


def test_nequip_benchmark_models_differ_only_in_the_output_block():
    # the NequIP rows compare like with like: the same network but for the output block, MLP vs KAN
    from kan_mlip.bench.harness import NequIPSize, model_config
    from kan_mlip.models.io import build_model
    from kan_mlip.nn import KANLinear

    size = NequIPSize()
    models = {p: build_model(model_config(p, "gaussian", "float64", size)) for p in ("none", "readout")}
    shapes = {p: {n: tuple(t.shape) for n, t in m.named_parameters() if "per_atom_energy_readout" not in n}
              for p, m in models.items()}
    assert shapes["none"] == shapes["readout"] and len(shapes["none"]) > 10
    kan = [m for m in models["readout"].modules() if isinstance(m, KANLinear)]
    assert [(m.in_features, m.out_features) for m in kan] == [(32, 32), (32, 1)]
    assert not any(isinstance(m, KANLinear) for m in models["none"].modules())
    readout = [tuple(w.shape) for n, w in models["none"].named_parameters() if "per_atom_energy_readout" in n]
    assert readout == [(32, 32), (32, 1)]  # MLP: one hidden layer of 32, like the KAN
    # 3 interaction layers, each with a radial MLP of one hidden layer of 64
    radial = {n: tuple(w.shape) for n, w in models["none"].named_parameters() if "edge_mlp.mlp.0" in n}
    assert sorted(radial) == [f"model.func.layer{i}_convnet.conv.edge_mlp.mlp.0.weight" for i in range(3)]
    assert set(radial.values()) == {(8, 64)}  # 8 Bessel functions -> 64


def test_help_documents_the_families_and_the_ranks(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ["--family", "nequip: mlp kan_readout", "3 interaction layers", "--nprocs", "OMP_NUM_THREADS",
                  "cost per atom-step", "--dtype", "--max-kan-ratio"]:
        assert words in text, words


def test_nprocs_below_one_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--nprocs", "1", "0"])
    assert exc.value.code == 2 and "--nprocs" in capsys.readouterr().err


def test_a_configuration_another_family_has_is_a_failed_row(tmp_path):
    # NequIP's only KAN block is its output block: "kan_all" there is a failed row naming NequIP's own
    rc = main(["--family", "nequip", "--configs", "kan_all", "--replicas", "1", "-o", str(tmp_path)])
    assert rc == 0
    (rec,) = json.loads((tmp_path / "bench.json").read_text())
    assert (rec["family"], rec["config"], rec["status"]) == ("nequip", "kan_all", "failed")
    assert "nequip has no configuration 'kan_all'" in rec["error"] and "mlp kan_readout" in rec["error"]
    assert "| kan_all (nequip) | failed" in (tmp_path / "bench.md").read_text()
