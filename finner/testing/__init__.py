"""Test and benchmark tooling that ships with the package: feeds, labelled tables and the fault-injecting chat server. No job and no other library module imports it (tests/test_layers.py)."""
