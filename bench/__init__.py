"""Benchmarks: each script puts the reference and the project in the same run and reports medians."""
