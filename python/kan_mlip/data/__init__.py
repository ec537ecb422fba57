"""Datasets: the embedded synthetic EMT Ag set, and ase.Atoms -> graph conversion."""

from .ag_emt import (DATASET_LABEL, SHEAR, STRAIN, ag_equation_of_state, ag_npt_volumes, ag_vacancy_cell, make_ag_data,
                     plot_equation_of_state)

__all__ = ["DATASET_LABEL", "SHEAR", "STRAIN", "ag_equation_of_state", "ag_npt_volumes", "ag_vacancy_cell", "make_ag_data",
           "plot_equation_of_state"]
