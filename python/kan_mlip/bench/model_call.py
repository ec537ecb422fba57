"""The bare model's energy+force call, timed and its memory measured, as `python -m
kan_mlip.bench.model_call model.pt REP [REPS]` (one JSON line) or through bare_model_call()."""

import json
import sys
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import torch


def bare_model_call(pair: Path, rep: int, reps: int = 10) -> Tuple[float, float]:
    """The deployed model's energy+force call alone, on the 71-atom cell replicated rep^3 times and
    rattled: (ms per call, the mean of reps calls after 3 untimed ones; the peak memory of one call in
    MB, call_peak_mb)."""
    from kan_mlip.compiler.files import load_deployed
    from kan_mlip.compiler.graph import model_inputs
    from kan_mlip.data import ag_vacancy_cell

    model, meta = load_deployed(pair)
    atoms = ag_vacancy_cell().repeat((rep, rep, rep))
    atoms.rattle(0.02, seed=1)
    types = np.zeros(len(atoms), dtype=int)
    args = model_inputs(atoms, np.array(meta["cutoff_matrix"]), types)
    for _ in range(3):
        model(*args)
    t0 = time.perf_counter()
    for _ in range(reps):
        model(*args)
    ms = 1e3 * (time.perf_counter() - t0) / reps
    return ms, call_peak_mb(lambda: model(*args))


def call_peak_mb(fn) -> float:
    """Peak memory of one call of fn (CPU): the running sum of torch's allocations and frees during the
    call (the profiler's memory events) at its maximum, plus the bytes in the KAN ops' scratch buffers,
    which torch does not see. Unlike a process's peak RSS it does not depend on where glibc's heap could
    grow: the same call gives the same number. NaN where the profiler gives no memory events."""
    from kan_mlip.nn.ops import scratch_bytes

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
    except AttributeError:  # another torch's profiler internals
        return float("nan")
    if not events:
        return float("nan")
    peak = float(np.max(np.cumsum([nbytes for _, nbytes in events])))
    return (peak + scratch_bytes()) / 2**20


if __name__ == "__main__":
    ms, mb = bare_model_call(Path(sys.argv[1]), int(sys.argv[2]), *(int(a) for a in sys.argv[3:4]))
    print(json.dumps({"ms_per_call": ms, "peak_mb": mb}))
