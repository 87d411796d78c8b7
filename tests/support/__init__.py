"""Test support: fixtures and helpers the test files share (not tests themselves)."""
