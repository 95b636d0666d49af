"""Cost and speed measurements, printed as tables (run each as `python -m benchmarks.NAME --help`)."""
