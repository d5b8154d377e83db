"""Ray wiring at the edge: stages stay plain functions over Arrow tables; this package runs them on Ray."""
