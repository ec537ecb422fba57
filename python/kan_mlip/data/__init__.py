"""Datasets: the embedded synthetic EMT Ag set, and ase.Atoms -> graph conversion."""

from .ag_emt import DATASET_LABEL, ag_vacancy_cell, make_ag_data

__all__ = ["DATASET_LABEL", "ag_vacancy_cell", "make_ag_data"]
