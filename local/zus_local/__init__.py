"""Local development helpers shared by the local stack and the tests."""
