"""The configs, LAMMPS inputs and study files kan-mlip ships, installed as the package ``kan_mlip.examples``
(found by ``kan_mlip.resources``)."""
