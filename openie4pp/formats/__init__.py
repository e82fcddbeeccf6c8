"""Readers for the benchmark formats (CaRB, Re-OIE2016, OIE2016, BenchIE) into OpenIE4++ records."""
