"""The producer service: a seeded categorical stream, with drift, to the numbers topic."""
