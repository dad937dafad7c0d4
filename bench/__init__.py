"""Benchmarks of jupyter_comm_ext against stock jupyter_server: see run.py."""
