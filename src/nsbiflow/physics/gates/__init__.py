"""Gates that stop a chain before the real data are fitted (``bias``: pseudo-data at known parameter points)."""
