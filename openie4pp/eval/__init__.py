"""Scorers: CaRB, Re-OIE2016 and BenchIE."""
