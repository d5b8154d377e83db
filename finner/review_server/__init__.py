"""A local Argilla for review rounds: launcher (client side) and server-side scripts."""
