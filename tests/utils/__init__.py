"""Helpers shared by the tests (not tests themselves): paths, processes, per-service fixtures."""
