"""kan-bench: real LAMMPS runs, failed configurations reported without stopping the others."""

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
