"""kan_mlip.nn depends on torch alone: MACE / ETGNN environments have no nequip."""

import subprocess
import sys


def test_kan_mlip_nn_imports_without_nequip_e3nn_or_ase():
    code = (
        "import sys\n"
        "for blocked in ('nequip', 'allegro', 'e3nn', 'ase'):\n"
        "    sys.modules[blocked] = None  # any import of these now raises ImportError\n"
        "import torch, kan_mlip.nn as nn\n"
        "y = nn.KANLinear(3, 2, basis='gaussian')(torch.randn(4, 3))\n"
        "assert y.shape == (4, 2)\n"
        "assert not any(m.split('.')[0] in ('nequip', 'allegro', 'e3nn') for m in sys.modules if sys.modules[m] is not None)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
