"""The stream into the lake: consuming batches, watch sessions, quality, drift, catalog sync, replay."""
