"""Test and benchmark tooling that ships with the package (the demo uses some of it too)."""
