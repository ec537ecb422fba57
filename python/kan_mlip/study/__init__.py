"""``kan-mlip study``: train several configurations under one budget and report their accuracy.

A study file (YAML) names the data, the configurations (names of configs in --config-dir, by
default the shipped ones, which `kan-mlip examples` copies; or paths to config files), the seeds and
the budget. The data is split once (seeded) into a pool that nequip-train splits again for training /
early stopping, and a validation set held out from training; the report's numbers come from
evaluating each saved model on that held-out set.

    name: ag_emt
    data: ag_emt.extxyz            # extxyz (or .gz); DeePMD folders: convert with kan-mlip convert-deepmd
    validation_fraction: 0.1
    configs:                       # example config names, config file paths, or {name, config, overrides}
      - allegro_mlp
      - allegro_kan_readout
      - {name: kan_readout_bspline, config: allegro_kan_readout, overrides: [training_module.model.kan_basis=bspline]}
    seeds: [1, 2, 3]
    max_epochs: 5
    overrides: []                  # extra nequip-train overrides for every run
    validation_frames: 200         # optional: absolute held-out count (instead of validation_fraction)
    pool_frames: 300               # optional: a documented subset for training (default: all the rest)
    train_eval_frames: 100         # training-set errors are measured on this many pool frames
    energy_references: config      # config: the config's own energy shifts | least_squares: per-element
                                   # references fitted to the training pool (see energy_references())
    md_cost: {rounds: 5, steps: 50, warmup: 5}   # optional: LAMMPS ms/step of every configuration (below)
    paper_table: Table 5           # optional: the paper table the study repeats (named in the report)

A configs entry may also carry ``label`` (its name in the paper-layout table) and ``paper``: the paper's
values for that row, ``{energy_mae: eV/atom, force_mae: eV/Å}``; with them the report adds a table in
the paper's layout and units, our values beside the paper's and each row's force and energy MAE ratios
to its MLP beside the paper's ratios (and, when every held-out frame has N atoms, the energy MAE per
N-atom frame). ``control: true`` marks a control configuration (e.g. an MLP output block widened to the
KAN block's parameter count): every configuration that is not an MLP is also set against it. The report
ends with what agrees with the paper and what does not, decided from the per-seed ratios (held-out force
and energy MAE, and the epochs to reach a validation force MAE every run reached): a difference is
resolved when the 95% interval of the mean ratio over seeds (Student's t, clipped at 0) excludes 1; it
agrees with the paper when the interval holds the paper's ratio and excludes 1, disagrees when it does
not hold the paper's ratio, and is undecided when it holds both the paper's ratio and 1.

With ``md_cost``, the report also gives the MD cost of every configuration: the best model of its
lowest-seed run deployed (kan-deploy, the training dtype) into models/, and the models timed taking turns
in one LAMMPS process on the first held-out frame (NVT); plotted against the held-out force error
(accuracy_vs_cost.png). The report also lists the per-seed force MAE ratios to the MLP, the runs that
stopped on their plateau (before max_epochs) and the training time and epochs each configuration took
to first reach a validation force MAE that every run reached.

Runs already finished in the output folder (a best.ckpt and a row in study.json or the run's own
result.json) are reused, and a run that was interrupted resumes from its last checkpoint (last.ckpt: model, optimizer, schedule and epoch),
so a long study can be carried out in pieces; the report is rewritten after every run. Each run's
learning curve (validation force and energy MAE against epoch and against training wall time) is kept
in study.json and plotted per configuration (curves_<config>.png) and all together (curves_all.png).
A run whose metrics turn NaN is reported as diverged; one whose validation force MAE rises above 10x
its untrained value is reported as unstable (listed with its numbers, not plotted).

``--jobs N`` trains N runs at a time, each in its own process (as ``--only`` below), then collects them
and writes the report: ``OMP_NUM_THREADS=1 kan-mlip study STUDY --jobs 2`` on a 2-core machine.

``--only CONFIG SEED`` trains and evaluates that one run (writing its result.json) and leaves the report
alone, so several runs of one study can train at the same time in separate processes; a later call
without ``--only`` collects them and writes the report. A process claims each run it trains (an flock
on runs/<run>/train.lock, gone when the process ends): a run another process is training is left to
it, and named in the report as missing, never trained twice at once. ``--status`` trains nothing and prints where every
run stands (state, epochs, best validation force MAE, learning rate, plateau count, training hours)
and about how many training hours are left.
``--report`` trains nothing: it writes the report from the runs finished so far (a long study's interim
report), naming every other run with where it stands; the MD cost is measured only by the collecting call.
``--reevaluate`` trains nothing either: it recomputes every finished run's numbers (parameters, held-out
and training-set errors) from its best.ckpt and sets them beside the recorded ones, exit status 1 if any
differs, so a recorded study's numbers can be checked from a clone without training.
"""

# spec: the study file and the data split; folder: the output folder (claims, finished runs, --status);
# train: training and evaluating the runs; report: report.md; plots: its figures
from .folder import BLOW_UP, claim, finished_runs, format_status, study_status
from .report import paired_ratios, ratio_interval, summary, time_to_reach, write_report
from .spec import EVALUATED, energy_references, load_study, partition, read_frames, split
from .train import evaluate_checkpoint, measure_md_cost, reevaluate, report_so_far, run_study, train_in_parallel

__all__ = ["BLOW_UP", "EVALUATED", "claim", "energy_references", "evaluate_checkpoint", "finished_runs", "format_status",
           "load_study", "measure_md_cost", "paired_ratios", "partition", "ratio_interval", "read_frames", "reevaluate",
           "report_so_far", "run_study", "split", "study_status", "summary", "time_to_reach", "train_in_parallel",
           "write_report"]
