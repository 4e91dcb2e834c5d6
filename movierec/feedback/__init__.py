"""Feedback loops: measures of concentration, list-driven watching and genre diversity over time."""
