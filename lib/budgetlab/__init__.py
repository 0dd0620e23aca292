"""budgetlab: train and measure token-budget-aware reasoning."""

__version__ = "0.1.0"
