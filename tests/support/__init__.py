"""Test tooling that is no part of the product: what only the tests start and drive."""
