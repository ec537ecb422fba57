"""ASE integration: a calculator for deployed models."""

from .calculator import KANCalculator

__all__ = ["KANCalculator"]
