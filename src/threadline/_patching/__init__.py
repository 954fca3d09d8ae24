"""Patching: one registry of reversible patches, for instrument() and the loss detector."""
